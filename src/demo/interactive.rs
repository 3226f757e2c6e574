//! `anyguard demo --interactive`: the user flips the sites' health by key.
//!
//! Keys are read one byte at a time by a thread of their own (a blocking read on stdin
//! that tokio could not cancel would keep the process from ending), and mapped to
//! [`KeyAction`]s by the pure [`key_action`]. On a terminal, line editing and echo are
//! turned off while the demo runs, so that a key acts at once; ctrl-c still sends SIGINT
//! (ISIG stays on) and the terminal is restored when [`TerminalMode`] is dropped.

use std::io::{IsTerminal, Read};

use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use tokio::sync::mpsc;

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAction {
    /// Flip the health target of site `n` (index).
    Flip(usize),
    /// Push the config without the service to every site, or the good one back.
    ToggleConfig,
    /// Print every site's service state and reason.
    Show,
    /// Print the keys.
    Help,
    /// End the demo.
    Quit,
}

/// The keys, as printed on screen.
pub const KEYS: &str = "keys: a/b/c flip that site's health, x push the config without the \
                        service to every site (again: the good one back), s show each site's \
                        state, h help, q quit (ctrl-c and end of input quit too)";

/// The action of key `byte`; `None` for whitespace and keys that mean nothing.
pub fn key_action(byte: u8) -> Option<KeyAction> {
    match byte.to_ascii_lowercase() {
        b'a' => Some(KeyAction::Flip(0)),
        b'b' => Some(KeyAction::Flip(1)),
        b'c' => Some(KeyAction::Flip(2)),
        b'x' => Some(KeyAction::ToggleConfig),
        b's' => Some(KeyAction::Show),
        b'h' | b'?' => Some(KeyAction::Help),
        b'q' => Some(KeyAction::Quit),
        _ => None,
    }
}

/// Starts the thread that reads stdin; the channel closes at end of input.
pub fn spawn_stdin_reader() -> mpsc::Receiver<u8> {
    let (tx, rx) = mpsc::channel(64);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut byte = [0u8; 1];
        loop {
            match stdin.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => {
                    if tx.blocking_send(byte[0]).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    });
    rx
}

/// Single-key input on a terminal for as long as it lives.
#[derive(Debug)]
pub struct TerminalMode {
    saved: Option<Termios>,
}

impl TerminalMode {
    /// Turns off line editing and echo when stdin is a terminal (nothing otherwise, or
    /// when the terminal refuses: keys then act after Enter).
    pub fn keys_at_once() -> Self {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return TerminalMode { saved: None };
        }
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return TerminalMode { saved: None };
        };
        let mut raw = saved.clone();
        raw.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO);
        raw.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        raw.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        match termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw) {
            Ok(()) => TerminalMode { saved: Some(saved) },
            Err(_) => TerminalMode { saved: None },
        }
    }
}

impl Drop for TerminalMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSANOW, saved);
        }
    }
}
