//! What the loader's test files share.

use std::collections::HashMap;
use std::path::PathBuf;

/// A committed Hugging Face fixture folder (`tests/fixtures/moe/hf/FAMILY`) as file name → bytes.
pub fn fixture_folder(family: &str) -> HashMap<String, Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/moe/hf")
        .join(family);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}
