//! With the `log` feature, rolecore's reports reach the `log` facade.
//! Run with `cargo test --features log --test log_feature`.
#![cfg(feature = "log")]

use std::sync::Mutex;

use rolecore::report::{Level, log_info};

static SEEN: Mutex<Vec<(log::Level, String, String)>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let entry = (record.level(), record.target().to_owned(), record.args().to_string());
        SEEN.lock().unwrap().push(entry);
    }
    fn flush(&self) {}
}

#[test]
fn reports_go_to_the_log_facade_with_their_level() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    log_info(Level::Error, format_args!("closing channel 7"));
    log_info(Level::Warning, format_args!("unhandled write event"));
    let seen = SEEN.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            (log::Level::Error, "rolecore".to_owned(), "closing channel 7".to_owned()),
            (log::Level::Warn, "rolecore".to_owned(), "unhandled write event".to_owned()),
        ]
    );
}
