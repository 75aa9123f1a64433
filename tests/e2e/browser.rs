//! Each kind of report (run, sweep, compare) opened in headless Chromium, as a reader opens it:
//! no console message or script error, every image loaded, every internal link resolves, no
//! network request, and a screenshot that is not blank.
//!
//! A test copy of each page gets, first thing in its `<head>`, a Content-Security-Policy that
//! allows nothing but inline styles and `data:` images (so any fetch is a reported violation)
//! and a small script that collects errors and violations and, after `load`, writes what it
//! found (broken images, anchors without a target, links, resource requests) into the page;
//! `--dump-dom` returns it. Chromium's own log (`--enable-logging=stderr`) shows every console
//! message of the page. `.ci/run` installs Chromium; `CNISIM_SKIP_BROWSER=1` skips the test.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cnisim::app;

use crate::{repo, scratch};

const CHECK: &str = r##"<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<script>
window.__cnisim = [];
document.addEventListener('securitypolicyviolation', e => __cnisim.push('blocked ' + e.blockedURI));
window.addEventListener('error', e => __cnisim.push('error ' + (e.message || (e.target && (e.target.src || e.target.href)))), true);
window.addEventListener('load', () => setTimeout(() => {
  const imgs = [...document.images];
  const out = {
    errors: __cnisim,
    images: imgs.length,
    broken_images: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
    missing_anchors: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href').slice(1)).filter(id => !document.getElementById(id)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href')).filter(h => !h.startsWith('#')),
    requests: performance.getEntriesByType('resource').map(r => r.name),
  };
  const pre = document.createElement('pre');
  pre.id = 'cnisim-check';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
}, 200));
</script>
"##;

fn chromium(profile: &Path, args: &[&str]) -> (String, String) {
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium runs (.ci/run installs it; CNISIM_SKIP_BROWSER=1 skips this test)");
    // Read the pipes while waiting (a page's DOM is larger than a pipe's buffer); give up on a
    // Chromium that hangs, ending that process (by its id) only.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let o = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("chromium {args:?} did not finish in 120 s");
        }
    };
    assert!(o.status.success(), "chromium {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Opens `dir/report.html` and lists what is wrong with it as a reader would meet it.
fn problems(dir: &Path, name: &str, work: &Path) -> Vec<String> {
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let head = page.find("<head>").expect("a <head>") + "<head>".len();
    let copy = dir.join("report.browser-check.html");
    std::fs::write(&copy, format!("{}\n{CHECK}{}", &page[..head], &page[head..])).unwrap();
    let url = format!("file://{}", copy.display());
    let profile = work.join(format!("profile-{name}"));
    let (dom, log) = chromium(&profile, &["--virtual-time-budget=5000", "--dump-dom", &url]);
    std::fs::remove_file(&copy).unwrap();
    let mut found: Vec<String> =
        log.lines().filter(|l| l.contains(":CONSOLE")).map(|l| format!("console: {l}")).collect();
    let Some(start) = dom.find("<pre id=\"cnisim-check\">") else {
        found.push("the check never ran".into());
        return found;
    };
    let json = &dom[start + "<pre id=\"cnisim-check\">".len()..];
    let json = &json[..json.find("</pre>").unwrap()];
    let json = json.replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let r: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: {e}: {json}"));
    let list = |key: &str| -> Vec<String> {
        r[key].as_array().unwrap().iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
    };
    found.extend(list("errors").into_iter().map(|e| format!("script: {e}")));
    found.extend(list("broken_images").into_iter().map(|i| format!("image not loaded: {i}")));
    found.extend(list("missing_anchors").into_iter().map(|a| format!("link to no section: #{a}")));
    found.extend(list("requests").into_iter().map(|u| format!("network request: {u}")));
    for link in list("links") {
        if link.contains(':') || link.starts_with('/') {
            found.push(format!("link leaves the report: {link}"));
        } else if !dir.join(&link).is_file() {
            found.push(format!("link names no file of the report: {link}"));
        }
    }
    if r["images"].as_u64().unwrap_or(0) < 3 {
        found.push(format!("only {} images", r["images"]));
    }
    found
}

/// Screenshots `dir/report.html` into `work/<name>.png` and checks it is not blank.
fn screenshot(dir: &Path, name: &str, work: &Path) -> PathBuf {
    let shot = work.join(format!("{name}.png"));
    chromium(
        &work.join(format!("profile-{name}")),
        &[
            "--window-size=1280,1600",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", dir.join("report.html").display()),
        ],
    );
    not_blank(&shot, name);
    shot
}

/// The screenshot decodes and shows a page: many pixels not white, in many colours.
fn not_blank(png_path: &Path, name: &str) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert!(info.width >= 800 && info.height >= 800, "{name}: {}x{}", info.width, info.height);
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    let inked = pixels.iter().filter(|p| p[..3].iter().any(|&c| c < 200)).count();
    let mut colours: Vec<[u8; 3]> = pixels.iter().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(inked * 100 > pixels.len(), "{name}: only {inked} of {} pixels inked", pixels.len());
    assert!(colours.len() > 20, "{name}: {} colours", colours.len());
}

#[test]
fn every_kind_of_report_opens_cleanly_in_a_browser() {
    if std::env::var_os("CNISIM_SKIP_BROWSER").is_some_and(|v| v == "1") {
        eprintln!("CNISIM_SKIP_BROWSER=1: browser check skipped");
        return;
    }
    let work = scratch("browser");
    let run = app::run(
        &repo("scenarios/services.ron"),
        &app::RunOptions { out: Some(work.join("run")), ..Default::default() },
    )
    .unwrap()
    .out_dir;
    let text = std::fs::read_to_string(repo("scenarios/rule-scaling.ron")).unwrap();
    let start = text.find("sweep: (").unwrap();
    let sweep_text = format!(
        "{}sweep: (parameter: \"services\", values: [10, 200], proxies: [\"iptables\", \"ebpf\"]),\n)\n",
        &text[..start]
    );
    let sweep_file = work.join("sweep.ron");
    std::fs::write(&sweep_file, sweep_text).unwrap();
    let sweep = app::sweep(&sweep_file, Some(work.join("sweep")), None, false, None).unwrap().0;
    let compare = &crate::compare::quickstart_all().0;
    for (name, dir) in [("run", &run), ("sweep", &sweep), ("compare", compare)] {
        assert_eq!(problems(dir, name, &work), Vec::<String>::new(), "{name}");
        eprintln!("{name}: {}", screenshot(dir, name, &work).display());
    }
    // The check itself sees each kind of fault.
    let bad = work.join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(
        bad.join("report.html"),
        "<!DOCTYPE html><html><head><title>bad</title></head><body><a href=\"#nowhere\">x</a>\
         <a href=\"missing.csv\">y</a><img alt=\"remote\" src=\"http://example.com/a.png\">\
         <script>console.log('hello'); undefined_function();</script></body></html>",
    )
    .unwrap();
    let found = problems(&bad, "bad", &work).join("\n");
    for want in [
        "console: ",
        "script: error Uncaught ReferenceError: undefined_function is not defined",
        "network request: http://example.com/a.png",
        "image not loaded: remote",
        "link to no section: #nowhere",
        "link names no file of the report: missing.csv",
        "only 1 images",
    ] {
        assert!(found.contains(want), "{want:?} not found in:\n{found}");
    }
}
