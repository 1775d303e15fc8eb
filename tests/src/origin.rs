//! Which local process opened a loopback TCP connection, found through Linux's `/proc`. The fault proxy uses
//! it to tell a broker's outgoing connections apart from everyone else's: every node reaches every other one
//! through that node's proxy, so isolating a node means dropping, at every other proxy, the connections the
//! isolated node itself opened, and only the address of a process's socket, not its owner, reaches the proxy.
//!
//! A process is recognised by a marker among its command-line arguments (for a broker: its data directory,
//! unique per node and stable across restarts). Lookups read `/proc/net/tcp` for the socket's inode and then
//! the file descriptors of the processes carrying a marker; elsewhere than on Linux they find nothing.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Identifies the processes whose command line holds one of the given markers.
#[derive(Debug, Clone, Default)]
pub struct ProcessMarkers {
    /// `(origin, marker)`: a process with an argument equal to `marker` is `origin`.
    markers: Vec<(u32, String)>,
}

impl ProcessMarkers {
    pub fn new(markers: impl IntoIterator<Item = (u32, String)>) -> ProcessMarkers {
        ProcessMarkers { markers: markers.into_iter().collect() }
    }

    /// The origin of the process that owns the client end of the connection from `peer` to `local`
    /// (`local` is this process's accepting socket), or `None` if no marked process owns it.
    pub fn origin_of(&self, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
        let inode = socket_inode(peer, local)?;
        let wanted = format!("socket:[{inode}]");
        for (pid, origin) in self.marked_processes() {
            let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
            let owns = fds
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == wanted.as_str()));
            if owns {
                return Some(origin);
            }
        }
        None
    }

    /// `(pid, origin)` of every running process carrying a marker.
    fn marked_processes(&self) -> Vec<(u32, u32)> {
        let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
            // A process may exit between listing and reading; skip it then.
            let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let arguments: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let marked = self.markers.iter().find(|(_, marker)| arguments.contains(&marker.as_bytes()));
            if let Some((origin, _)) = marked {
                found.push((pid, *origin));
            }
        }
        found
    }
}

/// The inode of the IPv4 socket whose local address is `local_end` and whose remote address is `remote_end`.
fn socket_inode(local_end: SocketAddr, remote_end: SocketAddr) -> Option<u64> {
    let (SocketAddr::V4(local_end), SocketAddr::V4(remote_end)) = (local_end, remote_end) else { return None };
    let table = fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local = parse_proc_address(fields.get(1)?)?;
        let remote = parse_proc_address(fields.get(2)?)?;
        (local == local_end && remote == remote_end).then(|| fields.get(9)?.parse().ok()).flatten()
    })
}

/// Parses `0100007F:1F90`: the IPv4 address as the kernel's native-endian u32 in hex, then the port in hex.
fn parse_proc_address(field: &str) -> Option<SocketAddrV4> {
    let (address, port) = field.split_once(':')?;
    let address = u32::from_str_radix(address, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddrV4::new(Ipv4Addr::from(address.to_ne_bytes()), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::process::{Command, Stdio};

    #[test]
    fn parses_kernel_addresses() {
        let expected = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080);
        let native = u32::from_ne_bytes([127, 0, 0, 1]);
        assert_eq!(parse_proc_address(&format!("{native:08X}:1F90")), Some(expected));
        assert_eq!(parse_proc_address("garbage"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn finds_the_marked_process_that_opened_a_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let marker = format!("rill-origin-test-{}", std::process::id());
        // The child connects and then waits for its stdin to close, so it holds the connection while we look.
        let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port}; read -r _");
        let mut child = Command::new("bash")
            .args(["-c", &script, &marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run bash");
        let (mut socket, peer) = listener.accept().unwrap();
        let local = socket.local_addr().unwrap();

        let markers = ProcessMarkers::new([(7, marker), (8, "no-such-marker".to_owned())]);
        assert_eq!(markers.origin_of(peer, local), Some(7));
        // A connection of this process carries no marker.
        let own = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_accepted, own_peer) = listener.accept().unwrap();
        assert_eq!(markers.origin_of(own_peer, local), None);

        drop(own);
        drop(child.stdin.take());
        child.wait().unwrap();
        let mut rest = Vec::new();
        let _ = socket.read_to_end(&mut rest);
    }
}
