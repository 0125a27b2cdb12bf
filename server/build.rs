//! Embeds the web UI: lists every file under `web/` into
//! `$OUT_DIR/web_assets.rs`, a table of (path, content type, ETag, bytes)
//! that `src/web/assets.rs` includes. A file added to `web/` is served
//! without touching the code; an extension the table does not know fails
//! the build, naming the file.

use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("web");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = vec![];
    walk(&root, &mut files);
    files.sort();
    let mut out = String::from("&[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_str()
            .expect("UTF-8 path");
        let Some(mime) = content_type(rel) else {
            panic!("web/{rel}: unknown file type; add its extension to server/build.rs");
        };
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("web/{rel}: {e}"));
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        writeln!(
            out,
            "    Asset {{ path: {rel:?}, content_type: {mime:?}, etag: \"\\\"{:016x}\\\"\", body: include_bytes!({:?}) }},",
            h.finish(),
            file.display().to_string()
        )
        .unwrap();
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("web_assets.rs");
    std::fs::write(dest, out).unwrap();
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}
