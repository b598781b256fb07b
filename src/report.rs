//! The one-line reports rolecore makes on its own: asyncore's `log_info`.
//!
//! The default handlers report what they cannot handle: `handle_error`'s
//! "uncaptured error, closing channel …" line, a failed connect, and the
//! warnings asyncore wrote for unhandled events. Reports go through one hook
//! that a program can replace. The default hook writes errors and information
//! to standard error and drops warnings, as asyncore's `ignore_log_types`
//! dropped them. With the `log` cargo feature, the default sends every report
//! to the [`log`](https://docs.rs/log) facade instead (target `rolecore`),
//! where the program's logger decides.

use std::fmt;
use std::sync::RwLock;

/// How serious a report is (asyncore's log types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// A note: `info`.
    Info,
    /// Something unhandled, harmless: `warning` (silent by default).
    Warning,
    /// A channel was closed because of an error: `error`.
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        })
    }
}

/// A function that receives every report.
pub type LogHook = Box<dyn Fn(Level, &fmt::Arguments<'_>) + Send + Sync>;

static HOOK: RwLock<Option<LogHook>> = RwLock::new(None);

/// Replaces the hook that receives rolecore's reports, for every thread;
/// `None` restores the default (errors and information to standard error,
/// warnings dropped).
///
/// # Examples
///
/// ```
/// use rolecore::report::{self, Level};
///
/// report::set_log_hook(Some(Box::new(|level, message| {
///     if level == Level::Error {
///         eprintln!("[my-server] {message}");
///     }
/// })));
/// # report::set_log_hook(None);
/// ```
pub fn set_log_hook(hook: Option<LogHook>) {
    // A poisoned lock only means a hook panicked; the slot is still usable.
    let mut slot = HOOK.write().unwrap_or_else(|e| e.into_inner());
    *slot = hook;
}

/// Sends one report through the hook, as asyncore's `log_info(message, type)`.
pub fn log_info(level: Level, message: fmt::Arguments<'_>) {
    let slot = HOOK.read().unwrap_or_else(|e| e.into_inner());
    match &*slot {
        Some(hook) => hook(level, &message),
        #[cfg(feature = "log")]
        None => {
            let level = match level {
                Level::Info => log::Level::Info,
                Level::Warning => log::Level::Warn,
                Level::Error => log::Level::Error,
            };
            log::log!(target: "rolecore", level, "{message}");
        }
        #[cfg(not(feature = "log"))]
        None if level != Level::Warning => eprintln!("{level}: {message}"),
        #[cfg(not(feature = "log"))]
        None => {}
    }
}
