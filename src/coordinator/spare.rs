//! The routes published before the last ones, kept to become the next ones (issue 13).
//!
//! Every decision publishes the desired routes as a new `Arc<RibOut>` (the peers hold the
//! one they last wrote, so a map is never changed once published). Building it as a copy
//! of the routes published last costs a copy of every route (~1,000 at 1,000 services,
//! some 50–100 µs on the path of each decision). Once the peers, their confirmations and
//! the coordinator's records have moved on to the routes published last, nothing holds
//! the map published before them: the patch that made the last routes and the new one,
//! applied to it in place, make the next routes without a copy.

use std::sync::{Arc, Weak};

use ipnet::IpNet;

use crate::announcer::{RibOut, RouteAttrs};

/// A patch's entries: each prefix's new route, `None` to withdraw it.
pub(super) type RoutesPatch = Vec<(IpNet, Option<RouteAttrs>)>;

/// The spare map (empty until a patch was published).
#[derive(Debug, Default)]
pub(super) struct SpareRoutes(Option<Spare>);

#[derive(Debug)]
struct Spare {
    /// Published before `published`.
    old: Arc<RibOut>,
    /// What turned `old` into `published`.
    patch: RoutesPatch,
    /// The routes published last, which the spare is only good for.
    published: Weak<RibOut>,
}

/// Applies `patch` to `routes`.
fn apply(routes: &mut RibOut, patch: &RoutesPatch) {
    for (prefix, route) in patch {
        match route {
            Some(attrs) => routes.insert(*prefix, attrs.clone()),
            None => routes.remove(prefix),
        };
    }
}

impl SpareRoutes {
    /// `previous` (the routes published last) with `patch` applied: the spare brought up
    /// to date in place when it was kept for `previous` and nothing else holds it any
    /// more, else a copy of `previous`. Either way the spare is used up.
    pub(super) fn patched(&mut self, previous: &Arc<RibOut>, patch: &RoutesPatch) -> Arc<RibOut> {
        if let Some(Spare {
            mut old,
            patch: since,
            published,
        }) = self.0.take()
        {
            if Weak::ptr_eq(&published, &Arc::downgrade(previous)) {
                if let Some(routes) = Arc::get_mut(&mut old) {
                    apply(routes, &since);
                    apply(routes, patch);
                    return old;
                }
            }
        }
        let mut next = RibOut::clone(previous);
        apply(&mut next, patch);
        Arc::new(next)
    }

    /// `next`, made from `previous` by `patch`, is published: `previous` is the spare.
    pub(super) fn keep(&mut self, previous: &Arc<RibOut>, patch: &RoutesPatch, next: &Arc<RibOut>) {
        self.0 = Some(Spare {
            old: Arc::clone(previous),
            patch: patch.clone(),
            published: Arc::downgrade(next),
        });
    }

    /// Routes not made by a patch were published: no spare.
    pub(super) fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::announcer::RouteAttrs;

    fn prefix(i: u8) -> IpNet {
        format!("198.51.100.{i}/32").parse().unwrap()
    }

    fn routes(of: &[u8]) -> RibOut {
        of.iter()
            .map(|&i| (prefix(i), RouteAttrs::plain()))
            .collect()
    }

    fn announce(i: u8) -> (IpNet, Option<RouteAttrs>) {
        (prefix(i), Some(RouteAttrs::plain()))
    }

    fn withdraw(i: u8) -> (IpNet, Option<RouteAttrs>) {
        (prefix(i), None)
    }

    /// Publishes `patch` on top of `published` as the shell does; the new routes.
    fn publish(
        spare: &mut SpareRoutes,
        published: &Arc<RibOut>,
        patch: &RoutesPatch,
    ) -> Arc<RibOut> {
        let next = spare.patched(published, patch);
        spare.keep(published, patch, &next);
        next
    }

    #[test]
    fn a_patch_reuses_the_map_published_two_changes_ago_once_nothing_else_holds_it() {
        let mut spare = SpareRoutes::default();
        let v1 = Arc::new(routes(&[1, 2, 3]));
        let v2 = publish(&mut spare, &v1, &vec![withdraw(2)]);
        let v1_at = Arc::as_ptr(&v1);
        drop(v1); // the peers moved on to v2
        let v3 = publish(&mut spare, &v2, &vec![announce(4)]);
        assert_eq!(Arc::as_ptr(&v3), v1_at, "v1's map, brought up to date");
        assert_eq!(*v3, routes(&[1, 3, 4]));
        assert_eq!(*v2, routes(&[1, 3]), "the published routes never change");
    }

    #[test]
    fn a_spare_still_held_elsewhere_is_not_touched_and_the_last_routes_are_copied() {
        let mut spare = SpareRoutes::default();
        let v1 = Arc::new(routes(&[1, 2]));
        let v2 = publish(&mut spare, &v1, &vec![withdraw(1)]);
        // A peer (or a pending confirmation) still holds v1.
        let v3 = publish(&mut spare, &v2, &vec![announce(5)]);
        assert!(!Arc::ptr_eq(&v3, &v1));
        assert_eq!(*v1, routes(&[1, 2]));
        assert_eq!(*v3, routes(&[2, 5]));
    }

    #[test]
    fn a_spare_kept_for_other_routes_than_the_last_published_is_not_used() {
        let mut spare = SpareRoutes::default();
        let v1 = Arc::new(routes(&[1]));
        let v2 = publish(&mut spare, &v1, &vec![announce(2)]);
        drop(v1);
        // Routes published some other way (a full rebuild) since: the spare says nothing
        // about them.
        let full = Arc::new(routes(&[7, 8]));
        let v3 = spare.patched(&full, &vec![withdraw(8)]);
        assert_eq!(*v3, routes(&[7]));
        drop(v2);
    }

    #[test]
    fn after_a_full_update_the_next_patch_copies() {
        let mut spare = SpareRoutes::default();
        let v1 = Arc::new(routes(&[1]));
        let v2 = publish(&mut spare, &v1, &vec![announce(2)]);
        drop(v1);
        spare.clear();
        let v3 = spare.patched(&v2, &vec![announce(3)]);
        assert_eq!(*v3, routes(&[1, 2, 3]));
        assert_eq!(*v2, routes(&[1, 2]));
    }
}
