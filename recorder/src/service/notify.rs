//! systemd's readiness protocol (sd_notify(3)): one datagram of
//! `KEY=value` lines to the Unix socket named by `$NOTIFY_SOCKET` (a path,
//! or `@name` in the abstract namespace). Without `$NOTIFY_SOCKET` (not
//! started by systemd with Type=notify) it does nothing.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`, `STATUS=idle`, `STOPPING=1`). Errors are
/// returned for the caller to log: systemd's side may be gone at shutdown.
pub fn notify(state: &str) -> std::io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::notify;

    // One test touches the environment (tests run in parallel threads).
    #[test]
    fn notifications_reach_the_socket_named_by_notify_socket() {
        let dir = std::env::temp_dir().join(format!("dmarec-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        // No other test of this crate reads NOTIFY_SOCKET.
        std::env::set_var("NOTIFY_SOCKET", &path);
        notify("READY=1\nSTATUS=idle").unwrap();
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=idle");

        let name = format!("dmarec-notify-test-{}", std::process::id());
        use std::os::linux::net::SocketAddrExt;
        let abstract_addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let abstract_server = std::os::unix::net::UnixDatagram::bind_addr(&abstract_addr).unwrap();
        std::env::set_var("NOTIFY_SOCKET", format!("@{name}"));
        notify("STOPPING=1").unwrap();
        let n = abstract_server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");

        std::env::remove_var("NOTIFY_SOCKET");
        notify("READY=1").unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
