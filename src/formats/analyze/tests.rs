//! Tests of `herd analyze`: the figures of hand-made recordings.

use super::*;
use crate::formats::cast::Reader;

/// A hand-made 10-second session; every figure worked out by hand.
const CAST: &str = concat!(
    r#"{"version":2,"width":80,"height":24}"#,
    "\n",
    r#"[0.5, "o", "$ "]"#,
    "\n",
    r#"[1.0, "m", "state ready -> busy: output"]"#,
    "\n",
    r#"[1.0, "i", "mak"]"#,
    "\n",
    r#"[1.2, "i", "ee\u007f\r"]"#,
    "\n",
    r#"[1.5, "o", "make\r\n\u001b[31mError\u001b[0m: build fail"]"#,
    "\n",
    r#"[1.6, "o", "ed\r\nok line\r\n"]"#,
    "\n",
    r#"[4.0, "o", "Traceback (most recent call last):\r\n"]"#,
    "\n",
    r#"[4.5, "m", "state busy -> ready: output quiet"]"#,
    "\n",
    r#"[5.0, "i", "\u001b[200~echo hi\u001b[201~\r"]"#,
    "\n",
    r#"[5.1, "i", "\u001b[A\u0003"]"#,
    "\n",
    r#"[6.0, "m", "restart: exited with code 1"]"#,
    "\n",
    r#"[7.0, "m", "state ready -> busy: output"]"#,
    "\n",
    r#"[7.5, "o", "progress 10%\rprogress 100%\r\n"]"#,
    "\n",
    r#"[10.0, "o", "PANIC at the disco"]"#,
    "\n",
);

#[test]
fn figures_of_a_hand_made_session() {
    let events = Reader::new(CAST.as_bytes()).unwrap();
    let g = analyze_events(events, 0, 1.0).unwrap();
    let r = Report::combine("x".into(), "t".into(), 1.0, vec![g], false);
    assert_eq!(r.duration, 10.0);
    let out_bytes = "$ ".len()
        + "make\r\n\x1b[31mError\x1b[0m: build fail".len()
        + "ed\r\nok line\r\n".len()
        + "Traceback (most recent call last):\r\n".len()
        + "progress 10%\rprogress 100%\r\n".len()
        + "PANIC at the disco".len();
    assert_eq!(r.bytes_out, out_bytes as u64);
    let in_bytes =
        "mak".len() + "ee\x7f\r".len() + "\x1b[200~echo hi\x1b[201~\r".len() + "\x1b[A\x03".len();
    assert_eq!(r.bytes_in, in_bytes as u64);
    assert_eq!(r.inputs, 4);
    // Gaps without output: 0.5 (start), 1.0, 0.1, 2.4, 3.5, 2.5, 0 (end).
    assert!((r.idle_time - (2.4 + 3.5 + 2.5)).abs() < 1e-9, "{r:?}");
    // Busy 1.0-4.5 and 7.0-10.0.
    assert!((r.busy_time - 6.5).abs() < 1e-9, "{r:?}");
    assert_eq!(r.busy_time_from, "markers");
    assert_eq!(r.restarts, 1);
    assert_eq!(r.markers, 4);
    let errors: Vec<(f64, &str)> = r
        .error_lines
        .iter()
        .map(|l| (l.time, l.text.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (1.5, "Error: build failed"),
            (4.0, "Traceback (most recent call last):"),
            (10.0, "PANIC at the disco"),
        ]
    );
    assert_eq!(r.error_lines_total, 3);
    let commands: Vec<(f64, &str)> = r
        .commands
        .iter()
        .map(|l| (l.time, l.text.as_str()))
        .collect();
    assert_eq!(commands, [(1.2, "make"), (5.0, "echo hi")]);
    let text = r.render();
    assert!(
        text.contains("busy time    6.500s (from state markers)"),
        "{text}"
    );
    assert!(text.contains("     1.500s  Error: build failed"), "{text}");
}

#[test]
fn without_state_markers_busy_is_duration_less_idle() {
    let cast = "{\"version\":2,\"width\":80,\"height\":24}\n[0.2, \"o\", \"a\"]\n[3.2, \"o\", \"b\"]\n[3.7, \"o\", \"c\"]\n";
    let g = analyze_events(Reader::new(cast.as_bytes()).unwrap(), 0, 1.0).unwrap();
    let r = Report::combine("x".into(), "t".into(), 1.0, vec![g], false);
    assert!((r.idle_time - 3.0).abs() < 1e-9);
    assert!((r.busy_time - 0.7).abs() < 1e-9);
    assert_eq!(r.busy_time_from, "estimate");
    // The threshold decides what is idle.
    let g = analyze_events(Reader::new(cast.as_bytes()).unwrap(), 0, 5.0).unwrap();
    assert_eq!(g.idle_time, 0.0);
}

#[test]
fn generations_add_up_and_count_as_restarts() {
    let gen = |n: u64, restart: bool| {
        let mut a = Analyzer::new(n, 1.0);
        a.event(&Event::output(2.0, "fatal: x\n"));
        if restart {
            a.event(&Event {
                time: 3.0,
                code: Code::Marker,
                data: "restart: exited with code 1".into(),
            });
        }
        a.finish()
    };
    let r = Report::combine(
        "s".into(),
        "t".into(),
        1.0,
        vec![gen(0, true), gen(1, true), gen(2, false)],
        true,
    );
    assert_eq!((r.generations, r.restarts, r.duration), (3, 2, 8.0));
    assert_eq!(
        r.error_lines
            .iter()
            .map(|l| l.generation)
            .collect::<Vec<_>>(),
        [0, 1, 2]
    );
    // A restart without a marker (e.g. asked for) still counts.
    let r = Report::combine(
        "s".into(),
        "t".into(),
        1.0,
        vec![gen(0, false), gen(1, false)],
        true,
    );
    assert_eq!(r.restarts, 1);
    let r = Report::combine("f".into(), "t".into(), 1.0, vec![gen(0, false)], false);
    assert_eq!(r.restarts, 0);
}

#[test]
fn error_lines_are_capped() {
    let mut a = Analyzer::new(0, 1.0);
    for i in 0..80 {
        a.event(&Event::output(i as f64 * 0.01, format!("error {i}\r\n")));
    }
    let r = Report::combine("x".into(), "t".into(), 1.0, vec![a.finish()], false);
    assert_eq!(r.error_lines_total, 80);
    assert_eq!(r.error_lines.len(), MAX_ERROR_LINES);
    assert!(r.render().contains("... 70 more"));
}
