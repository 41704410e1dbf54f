//! The build's progress line on a terminal.

/// A progress line on stderr for builds that take more than a moment (terminals only): the
/// current stage and the time so far, erased when the build is done.
pub(super) struct Spinner {
    stage: std::sync::Arc<std::sync::Mutex<&'static str>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    pub(super) fn start() -> Spinner {
        use std::sync::atomic::Ordering;
        let stage = std::sync::Arc::new(std::sync::Mutex::new("starting"));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (stage.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut shown = false;
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if started.elapsed() < std::time::Duration::from_millis(800)
                    || d.load(Ordering::Relaxed)
                {
                    continue;
                }
                let name = *s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                eprint!(
                    "\r\x1b[K{} plinth: {name} ({:.1} s)",
                    frames[i % 4],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                shown = true;
            }
            if shown {
                eprint!("\r\x1b[K");
            }
        });
        Spinner {
            stage,
            done,
            thread: Some(thread),
        }
    }

    pub(super) fn progress(&self) -> crate::Progress {
        let stage = self.stage.clone();
        crate::Progress(std::sync::Arc::new(move |name| {
            *stage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        }))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
