//! Renderers fed with fixed event sequences. Timestamps in the sequences are
//! made up, so the snapshots are exact, timings included.

use super::*;
use rbuild::{Event, Stream};

const T0: u64 = 1_700_000_000_000;

fn started(v: &str, name: &str, t: u64) -> Event {
    Event::Started { vertex: v.into(), name: name.into(), time_ms: T0 + t }
}
fn cached(v: &str, name: &str, t: u64) -> Event {
    Event::Cached { vertex: v.into(), name: name.into(), time_ms: T0 + t }
}
fn log(v: &str, data: &str, t: u64) -> Event {
    Event::Log { vertex: v.into(), stream: Stream::Stdout, data: data.into(), time_ms: T0 + t }
}
fn progress(v: &str, id: &str, current: u64, total: u64, t: u64) -> Event {
    Event::Progress { vertex: v.into(), id: id.into(), current, total: Some(total), time_ms: T0 + t }
}
fn done(v: &str, name: &str, t: u64, duration_ms: u64) -> Event {
    Event::Done { vertex: v.into(), name: name.into(), time_ms: T0 + t, duration_ms }
}
fn failed(v: &str, name: &str, error: &str, t: u64) -> Event {
    Event::Failed { vertex: v.into(), name: name.into(), error: error.into(), time_ms: T0 + t }
}

const PULL: &str = "[internal] load example.com/base:1";
const COPY: &str = "[build 3/4] COPY . /src";
const MAKE: &str = "[build 4/4] RUN make";
const TEST: &str = "[test 2/2] RUN ./run-tests";

fn layer(n: u8) -> String {
    format!("pull sha256:{}", format!("{n:02x}").repeat(32))
}

/// Two stages in parallel, a pull with two layers, interleaved output and
/// a chunk that splits a line.
fn success_events() -> Vec<Event> {
    vec![
        Event::Warning { message: "FROM uses a lowercase `as`".into(), time_ms: T0 },
        started("sha256:pull", PULL, 0),
        progress("sha256:pull", &layer(1), 0, 2_810_000, 10),
        progress("sha256:pull", &layer(2), 0, 1050, 10),
        progress("sha256:pull", &layer(2), 1050, 1050, 40),
        progress("sha256:pull", &layer(1), 1_000_000, 2_810_000, 120),
        progress("sha256:pull", &layer(1), 2_810_000, 2_810_000, 300),
        done("sha256:pull", PULL, 350, 350),
        cached("sha256:copy", COPY, 360),
        started("sha256:make", MAKE, 400),
        started("sha256:test", TEST, 410),
        log("sha256:make", "cc -o app ", 500),
        log("sha256:test", "test one ... ok\n", 520),
        log("sha256:make", "main.c\n\u{1b}[32mlinked\u{1b}[0m\n", 900),
        done("sha256:make", MAKE, 1400, 1000),
        log("sha256:test", "test two ... ok\nno newline at end", 1500),
        done("sha256:test", TEST, 1600, 1190),
    ]
}

fn failure_events() -> Vec<Event> {
    vec![
        cached("sha256:copy", COPY, 0),
        started("sha256:make", MAKE, 100),
        started("sha256:test", TEST, 110),
        log("sha256:make", "make: *** No rule to make target 'all'.  Stop.\n", 300),
        failed(
            "sha256:make",
            MAKE,
            "[build 4/4] RUN make: process [\"/bin/sh\", \"-c\", \"make\"] did not complete successfully: exit code: 2\nlast output:\n  make: *** No rule to make target 'all'.  Stop.",
            350,
        ),
    ]
}

const DOCKERFILE: &str = "\
FROM example.com/base:1 AS build
WORKDIR /src
COPY . /src
RUN make

FROM build AS test
RUN ./run-tests
";

fn source() -> DockerfileSource {
    DockerfileSource { name: "Dockerfile".into(), contents: DOCKERFILE.as_bytes().to_vec() }
}

/// A `Write` that tests can read after the renderer is done with it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

fn plain_output(events: &[Event], error: Option<&str>) -> String {
    let mut p = plain::Plain::default();
    let mut out = Vec::new();
    for e in events {
        p.render(e, &mut out).expect("write to a Vec");
    }
    p.finish(error.is_some(), T0 + 5000, &mut out).expect("write to a Vec");
    if let Some(error) = error {
        out.extend_from_slice(report::render(&p.state, Some(&source()), error).as_bytes());
    }
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn plain_success() {
    insta::assert_snapshot!(plain_output(&success_events(), None));
}

#[test]
fn plain_failure_with_report() {
    let events = failure_events();
    let Event::Failed { error, .. } = &events[4] else { panic!("the fifth event is the failure") };
    insta::assert_snapshot!(plain_output(&events, Some(&error.clone())));
}

#[test]
fn plain_push_progress_is_summarised_per_blob() {
    let mut events = Vec::new();
    for blob in ["push sha256:aa", "push sha256:bb"] {
        for i in 0..=100u64 {
            events.push(progress("", blob, i * 10_000, 1_000_000, i * 10));
        }
    }
    events.push(progress("", "push sha256:cc", 5, 10, 2000));
    let out = plain_output(&events, None);
    insta::assert_snapshot!(out);
}

const SCREEN: tty::Screen = tty::Screen { width: 60, height: 0, color: false };

fn tty_frame(events: &[Event], now: u64, screen: &tty::Screen, last: bool) -> String {
    let mut state = BuildState::default();
    for e in events {
        state.apply(e);
    }
    let failed = state.first_failure.is_some();
    let phase = match (last, failed) {
        (false, _) => tty::Phase::Running,
        (true, false) => tty::Phase::Finished,
        (true, true) => tty::Phase::Failed,
    };
    if last {
        state.close(failed, T0 + now);
    }
    tty::frame(&state, T0, T0 + now, screen, phase).join("\n")
}

#[test]
fn tty_frame_while_running() {
    let events = success_events();
    // Up to the second log chunk of `make`: pull done, two steps running.
    insta::assert_snapshot!(tty_frame(&events[..14], 1000, &SCREEN, false));
}

#[test]
fn tty_frame_while_pulling() {
    let events = success_events();
    insta::assert_snapshot!(tty_frame(&events[..6], 200, &SCREEN, false));
}

#[test]
fn tty_last_frame_collapses_steps() {
    insta::assert_snapshot!(tty_frame(&success_events(), 1700, &SCREEN, true));
}

#[test]
fn tty_failure_frame_keeps_output() {
    insta::assert_snapshot!(tty_frame(&failure_events(), 400, &SCREEN, true));
}

#[test]
fn tty_lines_fit_the_width_and_frames_the_height() {
    let mut events = vec![started("v", &format!("[a 2/2] RUN {}", "x".repeat(200)), 0)];
    for i in 0..20 {
        events.push(done(&format!("d{i}"), &format!("[a {i}/20] RUN true"), 10, 10));
    }
    events.push(log("v", &format!("{}\n", "日本".repeat(50)), 10));
    let screen = tty::Screen { width: 40, height: 10, color: false };
    let frame = tty_frame(&events, 100, &screen, false);
    let lines: Vec<&str> = frame.lines().collect();
    assert!(lines.len() <= 9, "{frame}");
    for l in &lines {
        assert!(text::width(l) < 40, "`{l}` is too wide");
    }
    // The running step survives the cut; finished ones go first.
    assert!(lines.iter().any(|l| l.starts_with(" => [a 2/2] RUN xxx")), "{frame}");
}

#[test]
fn tty_colors_only_when_asked() {
    let screen = tty::Screen { width: 60, height: 0, color: true };
    let coloured = tty_frame(&failure_events(), 400, &screen, true);
    assert!(coloured.contains("\x1b[31m => ERROR [build 4/4] RUN make"), "{coloured}");
    let plain = tty_frame(&failure_events(), 400, &SCREEN, true);
    assert!(!plain.contains('\x1b'), "{plain}");
}

#[test]
fn hostile_output_cannot_move_the_cursor() {
    let events = vec![started("v", "[a 2/2] RUN evil\u{1b}[2J", 0), log("v", "\u{1b}[1A\u{1b}[2Kgotcha\r\n", 10)];
    let frame = tty_frame(&events, 100, &SCREEN, false);
    assert!(!frame.contains('\x1b'), "{frame:?}");
    assert!(frame.contains(" => => # gotcha"), "{frame}");
}

#[test]
fn terminal_redraws_over_the_previous_frame() {
    let mut t = tty::Terminal::default();
    let mut out = Vec::new();
    t.draw(&["a".into(), "b".into()], &mut out).expect("write to a Vec");
    t.draw(&["c".into()], &mut out).expect("write to a Vec");
    let s = String::from_utf8(out).expect("utf-8");
    assert_eq!(s, "a\x1b[K\nb\x1b[K\n\x1b[J\r\x1b[2Ac\x1b[K\n\x1b[J");
}

#[test]
fn live_progress_draws_and_finishes_with_a_report() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::Tty { color: false }, Some(source()), Box::new(out.clone()), T0);
    let sink = p.sink();
    for e in failure_events() {
        sink.emit(e);
    }
    p.finish(Some("[build 4/4] RUN make: process failed: exit code: 2"));
    let text = out.text();
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("   4 | >>> RUN make\n"), "{text}");
    assert!(text.ends_with("ERROR: [build 4/4] RUN make: process failed: exit code: 2\n"), "{text}");
}

#[test]
fn a_build_that_fails_before_any_step_says_failed() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::Tty { color: false }, Some(source()), Box::new(out.clone()), T0);
    p.finish(Some("Dockerfile:3:1: unknown instruction `FORM`"));
    let text = out.text();
    assert!(text.contains("(0/0) FAILED"), "{text}");
    assert!(text.ends_with("ERROR: Dockerfile:3:1: unknown instruction `FORM`\n"), "{text}");
}

#[test]
fn quiet_prints_only_the_failure_report() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::Quiet, Some(source()), Box::new(out.clone()), T0);
    let sink = p.sink();
    for e in success_events() {
        sink.emit(e);
    }
    p.finish(None);
    assert_eq!(out.text(), "", "nothing on success");

    let out = Captured::default();
    let p = Progress::with_output(Mode::Quiet, Some(source()), Box::new(out.clone()), T0);
    let sink = p.sink();
    for e in failure_events() {
        sink.emit(e);
    }
    p.finish(Some("exit code: 2"));
    let text = out.text();
    assert!(text.starts_with("------\n > [build 4/4] RUN make:\n"), "{text}");
    assert!(text.contains(">>> RUN make"), "{text}");
}

#[test]
fn rawjson_is_one_event_per_line() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::RawJson, None, Box::new(out.clone()), T0);
    let sink = p.sink();
    for e in success_events() {
        sink.emit(e);
    }
    p.finish(None);
    let text = out.text();
    assert_eq!(text.lines().count(), success_events().len());
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert!(v["event"].is_string());
    }
}

#[test]
fn locate_finds_instructions_by_step_name() {
    let s = source();
    assert_eq!(report::locate(&s, MAKE), Some((4, 4)));
    assert_eq!(report::locate(&s, "[build 1/4] FROM example.com/base:1"), Some((1, 1)));
    assert_eq!(report::locate(&s, COPY), Some((3, 3)));
    assert_eq!(report::locate(&s, TEST), Some((7, 7)));
    // A name that no longer matches the file (edited since) shows nothing.
    assert_eq!(report::locate(&s, "[build 4/4] COPY x y"), None);
    assert_eq!(report::locate(&s, "[internal] load example.com/base:1"), Some((1, 1)));
    assert_eq!(report::locate(&s, "[internal] load example.com/other:1"), None);
    let hub = DockerfileSource { name: "Dockerfile".into(), contents: b"FROM scratch\nFROM debian AS x\n".to_vec() };
    assert_eq!(report::locate(&hub, "[internal] load docker.io/library/debian:latest"), Some((2, 2)));
    assert_eq!(report::locate(&s, "[nope 2/2] RUN x"), None);
    assert_eq!(report::locate(&s, "[linux/arm64 build 4/4] RUN make"), Some((4, 4)));
    let unnamed = DockerfileSource { name: "Dockerfile".into(), contents: b"FROM scratch\nRUN \\\n  false\n".to_vec() };
    assert_eq!(report::locate(&unnamed, "[stage-0 2/2] RUN false"), Some((2, 3)));
}

#[test]
fn modes() {
    let d = |s, terminal, dumb, no_color| Mode::decide(s, terminal, dumb, no_color).ok();
    assert_eq!(d("auto", true, false, false), Some(Mode::Tty { color: true }));
    assert_eq!(d("auto", true, false, true), Some(Mode::Tty { color: false }));
    assert_eq!(d("auto", true, true, false), Some(Mode::Plain));
    assert_eq!(d("auto", false, false, false), Some(Mode::Plain));
    assert_eq!(d("tty", false, false, false), Some(Mode::Tty { color: false }));
    assert_eq!(d("rawjson", true, false, false), Some(Mode::RawJson));
    assert_eq!(d("fancy", true, false, false), None);
    let err = Mode::decide("fancy", true, false, false).err().map(|e| e.to_string());
    assert_eq!(err.as_deref(), Some("invalid --progress `fancy`: expected auto, tty, plain, rawjson or quiet"));
}

#[test]
fn report_cleans_the_error_text() {
    let report = report::render(&BuildState::default(), None, "bad \u{1b}]0;pwned\u{7}thing\nsecond \u{1b}[2Jline");
    assert_eq!(report, "ERROR: bad thing\nsecond line\n");
}

#[test]
fn dropping_progress_without_finish_stops_the_live_view() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::Tty { color: false }, None, Box::new(out.clone()), T0);
    p.sink().emit(started("v", "[a 2/2] RUN x", 0));
    drop(p);
    let len = out.text().len();
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(out.text().len(), len, "nothing is drawn after the drop");
}

#[test]
fn output_before_the_announcement_gets_the_name_later() {
    let mut state = BuildState::default();
    state.apply(&log("v", "early\n", 0));
    state.apply(&started("v", "[a 2/2] RUN x", 5));
    assert_eq!(state.steps.len(), 1);
    assert_eq!(state.steps[0].name, "[a 2/2] RUN x");
}

#[test]
fn events_after_finish_are_dropped() {
    let out = Captured::default();
    let p = Progress::with_output(Mode::Plain, None, Box::new(out.clone()), T0);
    let sink = p.sink();
    sink.emit(started("v", "[a 2/2] RUN x", 0));
    p.finish(Some("boom"));
    let len = out.text().len();
    sink.emit(failed("w", "[b 2/2] RUN y", "cancelled", 10));
    assert_eq!(out.text().len(), len);
}

#[test]
fn many_transfers_show_the_moving_ones_and_the_latest_finished() {
    let mut events = vec![started("p", PULL, 0)];
    for n in 0..20u8 {
        let done_bytes = if n < 17 { 100 } else { 50 };
        events.push(progress("p", &format!("pull sha256:{n:02}"), done_bytes, 100, u64::from(n)));
    }
    let frame = tty_frame(&events, 100, &SCREEN, false);
    let shown: Vec<&str> = frame.lines().filter(|l| l.starts_with(" => => pull")).collect();
    assert_eq!(shown.len(), tty::TAIL_LINES, "{frame}");
    for moving in ["sha256:17", "sha256:18", "sha256:19"] {
        assert!(shown.iter().any(|l| l.contains(moving)), "{moving} is still moving: {frame}");
    }
    assert!(shown.iter().any(|l| l.contains("sha256:16 ")), "the latest finished: {frame}");
    assert!(!shown.iter().any(|l| l.contains("sha256:00 ")), "the oldest finished is hidden: {frame}");
}

/// The export steps the engine reports after the last build step: layers,
/// the local store's names, and a push where one blob is uploaded, one was
/// already there and one is mounted from the base image's repository.
fn export_events() -> Vec<Event> {
    let image = "export:exporting to image";
    let push = "export:pushing example.com/app:1";
    let blob = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
    vec![
        started(image, "exporting to image", 0),
        Event::Progress { vertex: image.into(), id: "exporting layers".into(), current: 0, total: None, time_ms: T0 },
        progress(image, "exporting layers", 0, 0, 300),
        progress(image, &format!("writing image {}", blob(9)), 0, 0, 310),
        progress(image, "naming to example.com/app:1", 0, 0, 320),
        done(image, "exporting to image", 330, 330),
        started(push, "pushing example.com/app:1", 340),
        progress(push, &format!("{} already exists", blob(1)), 0, 0, 400),
        progress(push, &format!("{} mounted from another repository", blob(2)), 0, 0, 420),
        progress(push, &format!("push {}", blob(3)), 0, 2_000_000, 430),
        progress(push, &format!("push {}", blob(3)), 1_000_000, 2_000_000, 600),
        progress(push, &format!("push {}", blob(3)), 2_000_000, 2_000_000, 900),
        progress(push, &format!("pushing manifest for example.com/app:1@{}", blob(4)), 0, 0, 950),
        done(push, "pushing example.com/app:1", 960, 620),
    ]
}

#[test]
fn plain_export_and_push_steps() {
    let out = plain_output(&export_events(), None);
    insta::assert_snapshot!(out);
}

#[test]
fn tty_frame_while_pushing() {
    let mut events = export_events();
    events.truncate(events.len() - 3);
    insta::assert_snapshot!(tty_frame(&events, 700, &SCREEN, false));
}
