"""The lab runner's library: namespaces and veth pairs, processes tracked by pid files,
the routing daemons' adapters, and the topology loaded from `anyguard.clab.yml`."""
