//! Socket options the standard library and tokio do not expose.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

/// Sets `SO_RCVLOWAT`: the socket reports itself readable (to `epoll`, so
/// that a task waiting on it wakes) only once `bytes` have arrived, or at
/// EOF or an error. A non-blocking read still returns whatever is there.
/// Lowering it signals readiness at once when enough is already queued.
pub fn set_receive_low_water(socket: &impl AsFd, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes.max(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is borrowed, so open; setsockopt only reads
    // the `c_int` it is given, whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Reads what `socket` holds into `buf`'s spare room without waiting, and
/// without consulting the runtime's idea of readiness: input below the
/// low-water mark was never reported, so tokio's own `try_read` would not
/// even look. `WouldBlock` when nothing is there; 0 at EOF.
pub fn recv_now(socket: &impl AsFd, buf: &mut bytes::BytesMut) -> io::Result<usize> {
    if buf.capacity() == buf.len() {
        buf.reserve(4096);
    }
    let spare = buf.spare_capacity_mut();
    // SAFETY: recv writes at most `spare.len()` bytes into memory that
    // `buf` owns; those it reports written are then initialised.
    let n = unsafe {
        libc::recv(
            socket.as_fd().as_raw_fd(),
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    // SAFETY: the first `n` bytes of the spare room were just written.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    /// Below the mark the socket does not poll readable; at it, it does;
    /// a non-blocking read takes what is there either way.
    #[test]
    fn readable_only_from_the_mark() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        set_receive_low_water(&server, 8).unwrap();
        let readable = |socket: &TcpStream| {
            let mut poll = libc::pollfd {
                fd: socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, for the length given.
            let n = unsafe { libc::poll(&mut poll, 1, 200) };
            n == 1 && poll.revents & libc::POLLIN != 0
        };
        client.write_all(b"abc").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!readable(&server), "3 bytes of 8 polled readable");
        client.write_all(b"defgh").unwrap();
        assert!(readable(&server), "8 bytes of 8 did not poll readable");
        client.write_all(b"ij").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        server.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(server.read(&mut buf).unwrap(), 10);
        let mut got = bytes::BytesMut::new();
        client.write_all(b"xyz").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(recv_now(&server, &mut got).unwrap(), 3);
        assert_eq!(&got[..], b"xyz");
        let nothing = recv_now(&server, &mut got).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        client.write_all(b"k").unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!readable(&server));
        set_receive_low_water(&server, 1).unwrap();
        assert!(readable(&server), "lowering the mark did not signal");
    }
}
