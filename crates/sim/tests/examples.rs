//! The example scenarios and recording in `examples/` stay valid.

use tributary_sim::scenario::Scenario;

#[test]
fn every_example_parses_and_generates_data() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => {
                let mut s =
                    Scenario::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                s.rate.duration_secs = Some(60.0);
                let points = tributary_sim::expected_points(&s, s.seed, 0);
                assert_eq!(
                    points.len(),
                    s.fleet.count,
                    "{}: every device sends",
                    path.display()
                );
                checked += 1;
            }
            Some("csv") => {
                let r = tributary_sim::replay::parse(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(!r.messages.is_empty());
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked >= 4, "{checked} examples");
}
