//! A network namespace of the test's own, joined to the host by one veth
//! pair: a worker inside it reaches the coordinator over the pair, and
//! nothing it does touches any address but the pair's. Needs root and
//! iproute2.

use std::net::IpAddr;
use std::process::Command;

/// A namespace with one veth pair to the host; removed on drop.
#[derive(Debug)]
pub struct Netns {
    /// The namespace's name (`ip netns exec NAME ...`).
    pub name: String,
    host_if: String,
    ns_if: String,
    n: u8,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("iproute2 is needed");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// Host side 10.231.N.1/30, namespace side 10.231.N.2/30: addresses of
    /// the test's own hosts, in a namespace the test made.
    pub fn create(n: u8) -> Netns {
        let tag = format!("{}{n}", std::process::id() % 10_000);
        let ns = Netns {
            name: format!("rfp{tag}"),
            host_if: format!("rfh{tag}"),
            ns_if: format!("rfn{tag}"),
            n,
        };
        ip(&["netns", "add", &ns.name]);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns.ns_if,
        ]);
        ip(&["link", "set", &ns.ns_if, "netns", &ns.name]);
        ip(&[
            "addr",
            "add",
            &format!("10.231.{n}.1/30"),
            "dev",
            &ns.host_if,
        ]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &ns.name,
            "ip",
            "addr",
            "add",
            &format!("10.231.{n}.2/30"),
            "dev",
            &ns.ns_if,
        ]);
        ip(&[
            "netns", "exec", &ns.name, "ip", "link", "set", &ns.ns_if, "up",
        ]);
        ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"]);
        // Anything for another address ends on the namespace's own
        // loopback: nothing leaves but to the pair. (A default route is
        // also what Chromium needs to list the namespace's address as a
        // WebRTC candidate.)
        ip(&[
            "netns", "exec", &ns.name, "ip", "route", "add", "default", "dev", "lo",
        ]);
        ns
    }

    /// Takes the namespace's side of the pair down or up (a partition).
    pub fn link(&self, up: bool) {
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "link",
            "set",
            &self.ns_if,
            if up { "up" } else { "down" },
        ]);
    }
}

impl Netns {
    /// Names the namespace's processes resolve, as if DNS said so:
    /// `/etc/netns/NAME/hosts`, which `ip netns exec` mounts over
    /// /etc/hosts (call it before starting them). Removed on drop.
    pub fn hosts(&self, names: &[(&str, IpAddr)]) {
        let dir = self.etc();
        std::fs::create_dir_all(&dir).expect("/etc/netns is writable (root)");
        let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
        for (name, ip) in names {
            text.push_str(&format!("{ip} {name}\n"));
        }
        std::fs::write(dir.join("hosts"), text).expect("the namespace's hosts file");
    }

    fn etc(&self) -> std::path::PathBuf {
        std::path::Path::new("/etc/netns").join(&self.name)
    }

    /// The host's address on the pair, as the namespace reaches it.
    pub fn host_ip(&self) -> IpAddr {
        IpAddr::from([10, 231, self.n, 1])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.etc());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}
