//! Small hand-written histories (in our JSON-lines format) for the cases
//! where a checker is easiest to get wrong: concurrency, stale reads,
//! failed and unknown outcomes.

use bifrost_jepsen::{check_history, CheckOptions, Error, Format, Report, Verdict};

/// Builds a history from compact lines `PROCESS TYPE F [VALUE] @TIME`, where
/// VALUE is JSON (`1`, `null`, `[1,2]`, `"s"`) and an optional `key=K` comes
/// before the time. Returns the JSON lines, to go through the real parser.
fn jsonl(lines: &[&str]) -> String {
    let mut out = String::new();
    for l in lines {
        let mut parts: Vec<&str> = l.split_whitespace().collect();
        let time = parts.pop().unwrap().strip_prefix('@').expect("a time");
        let key = match parts.last().and_then(|p| p.strip_prefix("key=")) {
            Some(k) => {
                parts.pop();
                k
            }
            None => "k",
        };
        let value = parts.get(3).copied().unwrap_or("null");
        out += &format!(
            r#"{{"process":{},"type":"{}","f":"{}","key":"{key}","value":{value},"time":{time}}}"#,
            parts[0], parts[1], parts[2]
        );
        out.push('\n');
    }
    out
}

fn check(lines: &[&str]) -> Report {
    let history = Format::Jsonl.parse(&jsonl(lines)).unwrap();
    check_history(&history, None, &CheckOptions::default()).unwrap()
}

fn verdict(lines: &[&str]) -> Verdict {
    check(lines).verdict
}

#[test]
fn a_read_concurrent_with_a_write_may_see_either_value() {
    for seen in ["1", "null"] {
        let read = format!("2 ok read {seen} @3");
        let h = [
            "1 invoke write 1 @0",
            "2 invoke read @1",
            read.as_str(),
            "1 ok write 1 @4",
        ];
        assert_eq!(verdict(&h), Verdict::Linearizable, "read {seen}");
    }
}

#[test]
fn a_stale_read_is_rejected_and_explained() {
    let report = check(&[
        "1 invoke write 1 @0",
        "1 ok write 1 @1",
        "1 invoke write 2 @2",
        "1 ok write 2 @3",
        "2 invoke read @4",
        "2 ok read 1 @5",
    ]);
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    let failure = report.failure.unwrap();
    assert_eq!(failure.key, "k");
    assert_eq!(failure.prefix.len(), 2, "both writes linearize");
    assert_eq!(failure.state, "2");
    assert_eq!(failure.stuck.to_string(), "process 2 read -> 1 (lines 5-6)");
}

#[test]
fn operations_that_only_touch_at_one_instant_are_concurrent() {
    // The read is invoked at the instant the write completes: either order.
    let h = [
        "1 invoke write 1 @0",
        "2 invoke read @5",
        "1 ok write 1 @5",
        "2 ok read null @6",
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn a_failed_cas_did_not_happen() {
    let before = [
        "1 invoke write 1 @0",
        "1 ok write 1 @1",
        "2 invoke cas [1,2] @2",
        "2 fail cas [1,2] @3",
        "3 invoke read @4",
    ];
    let mut h = before.to_vec();
    h.push("3 ok read 1 @5");
    assert_eq!(verdict(&h), Verdict::Linearizable);
    let mut h = before.to_vec();
    h.push("3 ok read 2 @5");
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn a_successful_cas_needs_the_old_value() {
    let h = [
        "1 invoke write 1 @0",
        "1 ok write 1 @1",
        "2 invoke cas [3,4] @2",
        "2 ok cas [3,4] @3",
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn an_info_write_may_take_effect_long_after_it_timed_out() {
    // The write timed out at 1; a read at 2-3 still sees nothing, one at
    // 4-5 sees it: it took effect between them.
    let h = [
        "1 invoke write 1 @0",
        "1 info write 1 @1",
        "2 invoke read @2",
        "2 ok read null @3",
        "2 invoke read @4",
        "2 ok read 1 @5",
        "2 invoke read @6",
        "2 ok read 1 @7",
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn an_info_write_takes_effect_at_most_once() {
    let h = [
        "1 invoke write 1 @0",
        "1 info write 1 @1",
        "3 invoke write 2 @2",
        "3 ok write 2 @3",
        "2 invoke read @4",
        "2 ok read 1 @5",
        "2 invoke read @6",
        "2 ok read 2 @7",
    ];
    assert_eq!(verdict(&h), Verdict::NotLinearizable);
}

#[test]
fn a_write_that_never_returns_may_take_effect_but_not_before_its_invocation() {
    let after = [
        "2 invoke read @0",
        "2 ok read null @1",
        "1 invoke write 1 @2",
        "2 invoke read @3",
        "2 ok read 1 @4",
    ];
    assert_eq!(verdict(&after), Verdict::Linearizable);
    let before = ["2 invoke read @0", "2 ok read 1 @1", "1 invoke write 1 @2"];
    assert_eq!(verdict(&before), Verdict::NotLinearizable);
}

#[test]
fn a_history_linearizable_only_because_the_info_op_happened() {
    let with = |outcome: &'static str| {
        let completion = format!("1 {outcome} cas [null,7] @1");
        let h = [
            "1 invoke cas [null,7] @0",
            completion.as_str(),
            "2 invoke read @2",
            "2 ok read 7 @3",
        ];
        verdict(&h)
    };
    assert_eq!(with("info"), Verdict::Linearizable);
    assert_eq!(with("fail"), Verdict::NotLinearizable);
    // An info op need not have happened either.
    let h = [
        "1 invoke write 7 @0",
        "1 info write 7 @1",
        "2 invoke read @2",
        "2 ok read null @3",
    ];
    assert_eq!(verdict(&h), Verdict::Linearizable);
}

#[test]
fn keys_are_independent_registers() {
    let report = check(&[
        "1 invoke write 1 key=a @0",
        "1 ok write 1 key=a @1",
        "2 invoke read key=b @2",
        "2 ok read 1 key=b @3",
    ]);
    assert_eq!(report.verdict, Verdict::NotLinearizable);
    assert_eq!(report.keys, 2);
    assert_eq!(report.failure.unwrap().key, "b");
}

#[test]
fn kv_histories_are_recognised_by_their_functions() {
    let h = [
        r#"1 invoke append "a" @0"#,
        r#"1 ok append "a" @1"#,
        r#"2 invoke append "b" @2"#,
        r#"3 invoke get @3"#,
        r#"3 ok get "ab" @4"#,
        r#"2 ok append "b" @5"#,
        r#"3 invoke get @6"#,
        r#"3 ok get "a" @7"#,
    ];
    let report = check(&h);
    assert_eq!(report.model, "kv");
    assert_eq!(report.verdict, Verdict::NotLinearizable);
}

#[test]
fn mixing_register_and_kv_functions_is_an_error_at_the_first_misfit() {
    let history = Format::Jsonl
        .parse(&jsonl(&[
            "1 invoke write 1 @0",
            "1 ok write 1 @1",
            r#"1 invoke append "x" @2"#,
        ]))
        .unwrap();
    let err = check_history(&history, None, &CheckOptions::default()).unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedOperation { line: 3, .. }),
        "{err}"
    );
}

#[test]
fn an_empty_history_is_linearizable() {
    assert_eq!(verdict(&[]), Verdict::Linearizable);
}
