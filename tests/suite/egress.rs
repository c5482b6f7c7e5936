//! Egress policy `allowlist` (docs/security.md, "Egress"): a task on an internal network whose
//! only way out is the server's HTTP(S) proxy. Upstreams are containers the test starts on
//! Docker's default bridge (no machine here reaches the internet); the proxy's name
//! resolution points at them through `network.resolve`.

use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::{Value, json};

/// An HTTP server on 8080 (answers every request with `hello from upstream` and the Host it
/// was sent) and a TLS one on
/// 8443 (`openssl s_server -www`, a self-signed certificate), in one container labelled with
/// the test's home (so its `Home` removes it), port 8080 published on the host.
struct Upstream {
    id: String,
    /// Its address on Docker's default bridge, which the host reaches directly.
    ip: String,
    /// 8080 published on the host, reached through the default bridge's gateway.
    gateway: String,
    published: u16,
}

impl Upstream {
    fn start(home: &Home) -> Self {
        let http = r#"perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 20, ReuseAddr => 1) or die $!; while (my $c = $s->accept) { my $h = ""; while (my $l = <$c>) { $h = $1 if $l =~ /^Host:\s*(\S+)/i; last if $l =~ /^\r?\n$/ } my $b = "hello from upstream\nhost=$h\n"; print $c "HTTP/1.1 200 OK\r\nContent-Length: " . length($b) . "\r\nConnection: close\r\n\r\n$b"; close $c }'"#;
        let tls = "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout /tmp/k.pem \
                   -out /tmp/c.pem -days 1 -subj /CN=secure.test 2>/dev/null \
                   && openssl s_server -accept 8443 -cert /tmp/c.pem -key /tmp/k.pem -www -quiet";
        let id = docker(&[
            "run",
            "-d",
            "--label",
            &format!("taskbox.home={}", home.path().display()),
            "-p",
            "8080",
            "taskbox-base",
            "bash",
            "-c",
            &format!("{http} & {tls} & wait"),
        ])
        .trim()
        .to_string();
        let inspect = docker_inspect("container", &id).unwrap();
        let ip = inspect["NetworkSettings"]["IPAddress"].as_str().unwrap().to_string();
        let gateway = inspect["NetworkSettings"]["Gateway"].as_str().unwrap().to_string();
        let published = docker(&["port", &id, "8080/tcp"])
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok())
            .unwrap();
        let upstream = Self {
            id,
            ip,
            gateway,
            published,
        };
        // Both listeners answer the host before the test goes on.
        let deadline = Instant::now() + Duration::from_secs(30);
        for port in [8080, 8443] {
            while std::net::TcpStream::connect((upstream.ip.as_str(), port)).is_err() {
                assert!(Instant::now() < deadline, "the upstream's port {port} never opened");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        upstream
    }

    /// The config: `allowed.test` is on every allowlist task's list; `secure.test` and
    /// `denied.test` resolve to the upstream too, so a refusal is the policy's, not the name's.
    fn config(&self) -> String {
        format!(
            "[network]\nallow = [\"allowed.test\"]\n[network.resolve]\n\"allowed.test\" = \"{ip}:8080\"\n\
             \"denied.test\" = \"{ip}:8080\"\n\"secure.test\" = \"{ip}:8443\"\n",
            ip = self.ip
        )
    }
}

async fn run(client: &Client, task: &str, command: &str) -> Value {
    call(
        client,
        "execute_in_task",
        json!({ "task": task, "command": command, "timeout_s": 60 }),
    )
    .await
}

fn out(result: &Value) -> String {
    format!(
        "{}{}",
        result["stdout"].as_str().unwrap_or(""),
        result["stderr"].as_str().unwrap_or("")
    )
}

/// The task's `egress` events through task_history, oldest first; waits for `count` (an
/// attempt is recorded when its connection closes).
async fn egress_events(client: &Client, task: &str, count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = call(
            client,
            "task_history",
            json!({ "task": task, "types": ["egress"], "limit": 100 }),
        )
        .await;
        let mut events: Vec<Value> = page["items"].as_array().cloned().unwrap_or_default();
        if events.len() >= count || Instant::now() > deadline {
            events.reverse();
            return events.into_iter().map(|e| e["data"].clone()).collect();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// An allowlisted task reaches an allowed upstream by name over HTTP and over HTTPS (a CONNECT
/// tunnel), is refused with a 403 naming the policy for another host, cannot connect directly
/// (where an egress task can: the control) nor resolve names, and every attempt is an event.
#[tokio::test(flavor = "multi_thread")]
async fn an_allowlisted_task_reaches_only_its_allowed_hosts_through_the_proxy() {
    require!(docker);
    let home = Home::new();
    let upstream = Upstream::start(&home);
    write_config(&home.path(), &upstream.config());
    let client = connect(&home.path(), "egress-allowlist").await;
    let task = call(
        &client,
        "create_task_sandbox",
        json!({ "name": "fenced", "network": "allowlist", "allow": ["secure.test:443"] }),
    )
    .await["task"]
        .clone();
    assert_eq!(task["network"], "allowlist");
    assert_eq!(task["allow"], json!(["allowed.test", "secure.test:443"]));

    // What the agent and people see.
    let status = call(&client, "get_task_status", json!({ "task": "fenced" })).await;
    assert_eq!(status["network"]["mode"], "allowlist", "{status}");
    assert_eq!(status["network"]["allow"], json!(["allowed.test", "secure.test:443"]));
    let proxy = status["network"]["proxy"].as_str().unwrap().to_string();
    assert!(proxy.ends_with(":13128"), "{proxy}");

    // Docker's view: an internal network, and a resolver that points nowhere.
    let id = task["id"].as_str().unwrap();
    let network = docker_inspect("network", &format!("taskbox-{id}")).unwrap();
    assert_eq!(network["Internal"], true, "{network}");
    let container = docker_inspect("container", task["container_id"].as_str().unwrap()).unwrap();
    let subnet = network["IPAM"]["Config"][0]["Subnet"].as_str().unwrap();
    let (base, prefix) = subnet.split_once('/').unwrap();
    let base = u32::from(base.parse::<std::net::Ipv4Addr>().unwrap());
    let broadcast = std::net::Ipv4Addr::from(base | (u32::MAX >> prefix.parse::<u32>().unwrap()));
    assert_eq!(
        container["HostConfig"]["Dns"],
        json!([broadcast.to_string()]),
        "the subnet's broadcast address"
    );

    // The proxy is in every command's environment.
    let env = run(&client, "fenced", "echo $HTTP_PROXY $https_proxy").await;
    assert_eq!(env["stdout"].as_str().unwrap().trim(), format!("{proxy} {proxy}"));

    // Allowed, by name, over HTTP (the proxy forwards the request).
    let r = run(&client, "fenced", "curl -sS -m 20 http://allowed.test/hello").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert_eq!(r["stdout"], "hello from upstream\nhost=allowed.test\n", "{r}");
    // Another Host on an allowed URL would reach another site of the same server: the
    // upstream gets the checked name.
    let r = run(
        &client,
        "fenced",
        "curl -sS -m 20 -H 'Host: elsewhere.test' http://allowed.test/",
    )
    .await;
    assert_eq!(r["stdout"], "hello from upstream\nhost=allowed.test\n", "{r}");

    // Allowed, by name, over TLS through a CONNECT tunnel (the certificate is self-signed).
    let r = run(&client, "fenced", "curl -sS -k -m 20 https://secure.test/").await;
    assert_eq!(r["exit_code"], 0, "{r}");
    assert!(
        out(&r).contains("s_server"),
        "openssl's status page through the tunnel: {r}"
    );

    // Refused, with the reason, over HTTP and over CONNECT; not a hang.
    let started = Instant::now();
    let r = run(
        &client,
        "fenced",
        "curl -sS -m 20 -w '\\n%{http_code}' http://denied.test/",
    )
    .await;
    let text = out(&r);
    assert!(text.trim_end().ends_with("403"), "{r}");
    assert!(
        text.contains("allowlist") && text.contains("denied.test:80 is not on the task's allowlist"),
        "{r}"
    );
    let r = run(&client, "fenced", "curl -sS -k -m 20 https://denied.test/").await;
    assert_ne!(r["exit_code"], 0, "{r}");
    assert!(out(&r).contains("403"), "{r}");
    let r = run(&client, "fenced", "curl -sS -k -m 20 https://secure.test:8443/").await;
    assert!(
        out(&r).contains("403"),
        "a pattern with a port allows that port only: {r}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "refusals are quick");

    // Direct connections fail: to the upstream's address, to its port published on the host,
    // and to the host's name server (outside the host: where an egress task gets through, the
    // control, when this machine's resolver takes TCP).
    let nameserver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix("nameserver "))
        .map(|a| a.trim().to_string())
        .find(|a| a.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| !ip.is_loopback()));
    let mut targets = vec![
        format!("{}/8080", upstream.ip),
        format!("{}/{}", upstream.gateway, upstream.published),
    ];
    targets.extend(nameserver.iter().map(|ns| format!("{ns}/53")));
    let probe: String = targets
        .iter()
        .map(|t| {
            format!(
                "timeout 5 bash -c 'exec 3<>/dev/tcp/{t}' 2>/dev/null && echo '{t} CONNECTED' || echo '{t} failed'; "
            )
        })
        .collect();
    let r = run(&client, "fenced", &probe).await;
    assert!(!out(&r).contains("CONNECTED"), "{r}");
    assert_eq!(out(&r).matches("failed").count(), targets.len(), "{r}");
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "open", "network": "egress" }),
    )
    .await;
    if let Some(ns) = &nameserver {
        let r = run(&client, "open", &probe).await;
        if !out(&r).contains(&format!("{ns}/53 CONNECTED")) {
            eprintln!("control unavailable: an egress task does not reach {ns}:53 over TCP here either: {r}");
        }
    }

    // No names but the proxy's: a lookup from inside fails, quickly.
    let started = Instant::now();
    let r = run(
        &client,
        "fenced",
        "getent hosts allowed.test pypi.org deb.debian.org; echo exit=$?",
    )
    .await;
    assert!(out(&r).contains("exit=2"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(15), "the lookup fails at once");
    let host_resolves = std::process::Command::new("getent")
        .args(["hosts", "pypi.org"])
        .output()
        .is_ok_and(|o| o.status.success());
    if host_resolves {
        let r = run(&client, "open", "getent hosts pypi.org; echo exit=$?").await;
        assert!(out(&r).contains("exit=0"), "control: an egress task resolves it: {r}");
    }

    // Each attempt is an event: host, port, allowed or not, bytes.
    let events = egress_events(&client, "fenced", 6).await;
    let summary: Vec<(String, u64, bool)> = events
        .iter()
        .map(|e| {
            (
                e["host"].as_str().unwrap_or("").to_string(),
                e["port"].as_u64().unwrap_or(0),
                e["allowed"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("allowed.test".to_string(), 80, true),
            ("allowed.test".to_string(), 80, true),
            ("secure.test".to_string(), 443, true),
            ("denied.test".to_string(), 80, false),
            ("denied.test".to_string(), 443, false),
            ("secure.test".to_string(), 8443, false),
        ],
        "{events:?}"
    );
    for allowed in [&events[0], &events[2]] {
        assert!(allowed["bytes_received"].as_u64().unwrap() > 0, "{allowed}");
        assert!(allowed["bytes_sent"].as_u64().unwrap() > 0, "{allowed}");
    }
    assert_eq!(events[0]["method"], "GET");
    assert_eq!(events[2]["method"], "CONNECT");
    assert!(
        events[3]["reason"].as_str().unwrap().contains("allowlist"),
        "{:?}",
        events[3]
    );
    drop(upstream.id);
}

/// `allow` is validated, and applies to allowlist tasks only.
#[tokio::test(flavor = "multi_thread")]
async fn bad_allow_lists_are_refused_with_what_to_write() {
    require!(docker);
    let home = Home::new();
    let client = connect(&home.path(), "egress-bad-allow").await;
    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "bad", "network": "allowlist", "allow": ["*"] }),
    )
    .await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("*.npmjs.org"), "{message}");
    let (kind, message) = call_err(
        &client,
        "create_task_sandbox",
        json!({ "name": "bad", "network": "egress", "allow": ["pypi.org"] }),
    )
    .await;
    assert_eq!(kind, "invalid_argument");
    assert!(message.contains("network: \"allowlist\""), "{message}");
}

/// `curl` through the proxy from inside the container, past taskbox (`docker exec`), so no
/// server is asked anything: whether it got the upstream's answer, and what curl said.
fn curl_past_taskbox(container: &str, proxy: &str) -> (bool, String) {
    let out = std::process::Command::new("docker")
        .args([
            "exec",
            container,
            "curl",
            "-sS",
            "-m",
            "10",
            "-x",
            proxy,
            "http://allowed.test/",
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (text.contains("hello from upstream"), text)
}

async fn wait_for_exit(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "server {pid} did not exit");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every server of a data directory listens for every running allowlist task (the same
/// address, `SO_REUSEPORT`): the one that made the task exiting leaves another serving; with
/// no server at all a connection is refused at once; a server that starts serves it again
/// within its scan, with no call on the task.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_is_served_by_any_live_server_and_comes_back_with_one() {
    require!(docker);
    let home = Home::new();
    let upstream = Upstream::start(&home);
    write_config(&home.path(), &upstream.config());
    let (a, a_pid) = connect_with_pid(&home.path(), "egress-a", &[]).await;
    let task = call(
        &a,
        "create_task_sandbox",
        json!({ "name": "shared", "network": "allowlist" }),
    )
    .await["task"]
        .clone();
    let container = task["container_id"].as_str().unwrap().to_string();
    let proxy = call(&a, "get_task_status", json!({ "task": "shared" })).await["network"]["proxy"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(curl_past_taskbox(&container, &proxy).0, "served by the creating server");

    // A second server finds the task on its own and listens too; the first one goes.
    let (b, b_pid) = connect_with_pid(&home.path(), "egress-b", &[]).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.cancel().await.unwrap();
    wait_for_exit(a_pid).await;
    let (ok, said) = curl_past_taskbox(&container, &proxy);
    assert!(ok, "the other server serves it: {said}");

    // No server: refused at once, saying where.
    b.cancel().await.unwrap();
    wait_for_exit(b_pid).await;
    let started = Instant::now();
    let (ok, said) = curl_past_taskbox(&container, &proxy);
    assert!(!ok && said.contains("13128"), "{said}");
    assert!(started.elapsed() < Duration::from_secs(5), "not a hang: {said}");

    // A server starts: it serves the task again without being asked about it.
    let c = connect(&home.path(), "egress-c").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, said) = curl_past_taskbox(&container, &proxy);
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "no server took the proxy back: {said}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let events = egress_events(&c, "shared", 3).await;
    assert!(
        events
            .iter()
            .filter(|e| e["allowed"] == true && e["host"] == "allowed.test")
            .count()
            >= 3,
        "{events:?}"
    );
}

/// An allowed name that resolves to the host (here `localhost`, as `*.nip.io`-style DNS does on
/// request) does not take the task through the proxy to the host's services: the proxy refuses
/// loopback and the host's own addresses, saying so. Control: the host reaches the listener.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_never_connects_to_the_host_whatever_a_name_resolves_to() {
    require!(docker);
    let home = Home::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(), "control");
    let client = connect(&home.path(), "egress-host").await;
    call(
        &client,
        "create_task_sandbox",
        json!({ "name": "sneaky", "allow": ["localhost"] }),
    )
    .await;
    let r = run(
        &client,
        "sneaky",
        &format!("env -u NO_PROXY -u no_proxy curl -sS -m 20 -w '\\n%{{http_code}}' http://localhost:{port}/"),
    )
    .await;
    let text = out(&r);
    assert!(text.trim_end().ends_with("403"), "{r}");
    assert!(
        text.contains("localhost resolves to 127.0.0.1, a loopback address"),
        "{r}"
    );
    let events = egress_events(&client, "sneaky", 1).await;
    assert_eq!(events[0]["allowed"], false, "{events:?}");
    assert_eq!(events[0]["host"], "localhost");
}
