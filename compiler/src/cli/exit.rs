//! What a command is done with: left to the process's exit in the binary.

/// Set when the process is the `plinth` binary ([`super::main`]), which exits once its command
/// is done.
static EXITS_AFTER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The process is the binary: it exits once its command is done.
pub(super) fn exits_after() {
    EXITS_AFTER.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A command is done with `x` (a platform's specs, documents, objects, lock files' text: memory
/// only). In the binary it is left to the process's exit, which takes the pages back at once,
/// rather than freed allocation by allocation on a thread competing for a core with what the
/// command still does; called from a library user's process, it is freed on a thread nothing
/// waits for.
pub(super) fn done_with<T: Send + 'static>(x: T) {
    if EXITS_AFTER.load(std::sync::atomic::Ordering::Relaxed) {
        std::mem::forget(x);
    } else {
        std::thread::spawn(move || drop(x));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    /// Signals when dropped.
    struct Freed(std::sync::mpsc::Sender<()>);

    impl Drop for Freed {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    /// In a library user's process (tests are one: nothing sets the binary's flag) what a
    /// command is done with is freed, not left behind.
    #[test]
    fn a_library_user_s_process_frees_what_is_done_with() {
        let (tx, rx) = std::sync::mpsc::channel();
        super::done_with(Freed(tx));
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("freed on its thread");
    }
}
