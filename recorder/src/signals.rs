//! SIGINT and SIGTERM handlers for `dmarec record` and `dmarec serve`: each
//! binary's handler only stores to atomics; this installs it.

/// Installs `handler` for SIGINT and SIGTERM, without SA_RESTART, so that
/// blocking waits return EINTR and see the flags the handler sets.
pub fn install_stop_handlers(handler: extern "C" fn(libc::c_int)) {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to atomics (async-signal-safe),
        // or calls _exit; sigaction copies the zeroed struct it is given.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = handler as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}
