//! The metrics file: JSON lines flushed one by one, read back whole.

use zeroformer::train::{MetricsWriter, Record, read_metrics};

#[test]
fn records_round_trip_and_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run/metrics.jsonl");
    {
        let mut m = MetricsWriter::append(&path).unwrap();
        m.write(
            Record::new(1)
                .split("train")
                .loss(3.0)
                .lr(1e-3)
                .grad_norm(0.5)
                .tokens_per_s(1000.0),
        )
        .unwrap();
        m.write(
            Record::new(1)
                .split("val")
                .loss(f32::NAN)
                .value("accuracy", 0.25),
        )
        .unwrap();
        // Written and flushed before the writer is dropped: a crash here keeps both.
        assert_eq!(read_metrics(&path).unwrap().len(), 2);
    }
    // A resumed run appends.
    let mut m = MetricsWriter::append(&path).unwrap();
    m.write(Record::new(2).split("train").loss(2.0)).unwrap();
    let back = read_metrics(&path).unwrap();
    assert_eq!(back.len(), 3);
    assert_eq!(
        (back[0].lr, back[0].grad_norm, back[0].tokens_per_s),
        (Some(1e-3), Some(0.5), Some(1000.0))
    );
    assert!(back.iter().all(|r| r.elapsed_s.is_some_and(|s| s >= 0.0)));
    // NaN is written as null and reads as absent.
    assert_eq!((back[1].loss, back[1].values["accuracy"]), (None, 0.25));
    assert_eq!(back[2].step, 2);

    // A line cut short by a crash (the last, without its newline) is skipped;
    // a broken line elsewhere is an error naming it.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}{{\"step\": 3, \"lo")).unwrap();
    assert_eq!(read_metrics(&path).unwrap().len(), 3);
    std::fs::write(&path, format!("not json\n{text}")).unwrap();
    let e = read_metrics(&path).unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("metrics.jsonl"), "{e}");
}
