//! The folder opening recipe (`FolderOpening`) on its own: the reads it asks for, in order, and the
//! answers it refuses. Drivers (native files and HTTP, the browser's fetch and picked files) only
//! answer these reads, so what is checked here holds for every one of them.

mod common;
use common::fixture_folder;

use std::collections::HashMap;
use webmoe_loader::{FolderAnswer, FolderOpening, FolderRead, LoadError, SHARD_FIRST_READ};

/// Answers every read from `files` (as a driver does) and returns the reads and the result.
fn drive(files: &HashMap<String, Vec<u8>>) -> (Vec<FolderRead>, Result<u64, LoadError>) {
    let mut opening = FolderOpening::new("fixture", None);
    let mut reads = Vec::new();
    while let Some(read) = opening.need() {
        reads.push(read.clone());
        let answer = match (&read, files.get(read.file())) {
            (_, None) => FolderAnswer::Missing,
            (FolderRead::Json { .. }, Some(b)) => FolderAnswer::Json {
                size: b.len() as u64,
                bytes: b.clone(),
            },
            (FolderRead::Shard { offset, len, .. }, Some(b)) => {
                let end = (offset + len).min(b.len() as u64);
                FolderAnswer::Shard {
                    size: b.len() as u64,
                    bytes: b[*offset as usize..end as usize].to_vec(),
                }
            }
        };
        if let Err(e) = opening.feed(answer) {
            return (reads, Err(e));
        }
    }
    (reads, opening.finish().map(|l| l.len()))
}

fn json(file: &str, required: bool) -> FolderRead {
    FolderRead::Json {
        file: file.into(),
        required,
    }
}

fn shard(file: &str, offset: u64, len: u64) -> FolderRead {
    FolderRead::Shard {
        file: file.into(),
        offset,
        len,
    }
}

#[test]
fn a_sharded_folder_is_opened_with_one_read_per_json_file_and_shard_header() {
    let files = fixture_folder("llama4");
    let (reads, r) = drive(&files);
    r.unwrap();
    let mut want = vec![
        json("config.json", true),
        json("model.safetensors.index.json", false),
    ];
    for i in 1..=4 {
        want.push(shard(
            &format!("model-0000{i}-of-00004.safetensors"),
            0,
            SHARD_FIRST_READ,
        ));
    }
    want.extend(
        [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
        ]
        .map(|f| json(f, false)),
    );
    assert_eq!(reads, want);
}

#[test]
fn a_header_longer_than_the_first_read_takes_one_more_read() {
    let mut files = fixture_folder("qwen2");
    // Pad the safetensors header past the first read (safetensors allows trailing spaces).
    let st = &files["model.safetensors"];
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let pad = SHARD_FIRST_READ as usize * 2;
    let mut padded = ((n + pad) as u64).to_le_bytes().to_vec();
    padded.extend_from_slice(&st[8..8 + n]);
    padded.extend(std::iter::repeat_n(b' ', pad));
    padded.extend_from_slice(&st[8 + n..]);
    files.insert("model.safetensors".into(), padded);
    let (reads, r) = drive(&files);
    r.unwrap();
    let shard_reads: Vec<_> = reads
        .iter()
        .filter(|r| matches!(r, FolderRead::Shard { .. }))
        .collect();
    assert_eq!(
        shard_reads,
        [
            &shard("model.safetensors", 0, SHARD_FIRST_READ),
            &shard(
                "model.safetensors",
                SHARD_FIRST_READ,
                8 + (n + pad) as u64 - SHARD_FIRST_READ
            )
        ]
    );
}

#[test]
fn answers_the_recipe_cannot_use_are_refused_with_the_file_named() {
    let files = fixture_folder("qwen2");
    // A JSON file over the limit: refused from its size, before its bytes.
    let mut opening = FolderOpening::new("f", None);
    let e = opening
        .feed(FolderAnswer::Json {
            size: 1 << 40,
            bytes: vec![],
        })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("f/config.json") && e.contains("more than"),
        "{e}"
    );
    // A short answer.
    let mut opening = FolderOpening::new("f", None);
    let c = &files["config.json"];
    let e = opening
        .feed(FolderAnswer::Json {
            size: c.len() as u64,
            bytes: c[..10].to_vec(),
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("short read"), "{e}");
    // The wrong kind of answer.
    let mut opening = FolderOpening::new("f", None);
    let e = opening
        .feed(FolderAnswer::Shard {
            size: 1,
            bytes: vec![0],
        })
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match"), "{e}");
    // A missing config.json.
    let mut opening = FolderOpening::new("f", None);
    let e = opening.feed(FolderAnswer::Missing).unwrap_err().to_string();
    assert!(
        e.contains("f/config.json") && e.contains("not found"),
        "{e}"
    );
    // Finishing early.
    let e = FolderOpening::new("f", None)
        .finish()
        .unwrap_err()
        .to_string();
    assert!(e.contains("not read to the end"), "{e}");
}

#[test]
fn a_tensor_in_two_shards_is_refused() {
    let mut files = fixture_folder("qwen2");
    let st = files["model.safetensors"].clone();
    files.insert("a.safetensors".into(), st.clone());
    files.insert("b.safetensors".into(), st);
    files.insert(
        "model.safetensors.index.json".into(),
        br#"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#.to_vec(),
    );
    let e = drive(&files).1.unwrap_err().to_string();
    assert!(e.contains("in more than one shard"), "{e}");
}

#[test]
fn shard_names_that_leave_the_folder_are_refused() {
    for name in ["../x.safetensors", "a/b.safetensors", ".hidden", "", "a\\b"] {
        let mut files = fixture_folder("qwen2");
        let index = serde_json::json!({ "weight_map": { "x": name } });
        files.insert(
            "model.safetensors.index.json".into(),
            serde_json::to_vec(&index).unwrap(),
        );
        let e = drive(&files).1.unwrap_err().to_string();
        assert!(e.contains("plain file names"), "{name}: {e}");
    }
}
