//! A network namespace joined to this one by a veth pair, for partition
//! tests: `cut` and `heal` the link from the namespace's side. Each `subnet`
//! (0 to 63) gets its own /30 of 198.51.100.0/24 (TEST-NET-2, never
//! routed), so that test binaries running at once never share addresses.
//! The namespace and the pair go away on drop.

use std::process::Command as Process;

pub struct Netns {
    pub name: String,
    /// This namespace's end of the pair.
    pub root_ip: String,
    /// The namespace's end.
    pub inner_ip: String,
    root_end: String,
    inner_end: String,
}

fn ip(args: &[&str]) -> bool {
    Process::new("ip")
        .args(args)
        .status()
        .is_ok_and(|s| s.success())
}

impl Netns {
    /// `None` when namespaces cannot be made here (not root, no iproute2).
    pub fn create(subnet: u8) -> Option<Netns> {
        assert!(subnet < 64, "subnet {subnet} is not in 0..64");
        let id = format!("{}{subnet}", std::process::id() % 10_000);
        let base = u32::from(subnet) * 4;
        let ns = Netns {
            name: format!("nsqt-{id}"),
            root_ip: format!("198.51.100.{}", base + 1),
            inner_ip: format!("198.51.100.{}", base + 2),
            root_end: format!("nqr{id}"),
            inner_end: format!("nqn{id}"),
        };
        let (name, root, inner) = (&ns.name, &ns.root_end, &ns.inner_end);
        let ok = ip(&["netns", "add", name])
            && ip(&["link", "add", root, "type", "veth", "peer", "name", inner])
            && ip(&["link", "set", inner, "netns", name])
            && ip(&["addr", "add", &format!("{}/30", ns.root_ip), "dev", root])
            && ip(&["link", "set", root, "up"])
            && ip(&[
                "netns",
                "exec",
                name,
                "ip",
                "addr",
                "add",
                &format!("{}/30", ns.inner_ip),
                "dev",
                inner,
            ])
            && ip(&["netns", "exec", name, "ip", "link", "set", inner, "up"])
            && ip(&["netns", "exec", name, "ip", "link", "set", "lo", "up"]);
        ok.then_some(ns)
    }

    /// Cuts the link from the namespace's side: this side keeps its route,
    /// so packets die on the veth instead of taking any other way.
    pub fn cut(&self) {
        self.set_inner_end("down");
    }

    pub fn heal(&self) {
        self.set_inner_end("up");
    }

    fn set_inner_end(&self, state: &str) {
        let name = &self.name;
        assert!(ip(&[
            "netns",
            "exec",
            name,
            "ip",
            "link",
            "set",
            &self.inner_end,
            state
        ]));
    }

    /// Publishes over HTTP from inside the namespace.
    pub fn publish_inside(&self, http: std::net::SocketAddr, topic: &str, body: &str) -> bool {
        let script = format!(
            "import urllib.request,sys\nr=urllib.request.urlopen(urllib.request.Request('http://{http}/pub?topic={topic}', data=sys.argv[1].encode()), timeout=10)\nsys.exit(0 if r.read()==b'OK' else 1)"
        );
        Process::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", &script, body])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// GETs `url` from inside the namespace; `None` when that fails.
    pub fn get_inside(&self, url: &str) -> Option<String> {
        let script = "import urllib.request,sys\nsys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())";
        let out = Process::new("ip")
            .args(["netns", "exec", &self.name, "python3", "-c", script, url])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.root_end]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
