//! Writes the generated descriptions of the wire types into the repository:
//! `docs/schemas/wire.schema.json`, `docs/asyncapi.json` and `library/static/js/protocol.d.ts`.
//!
//!     cargo run -p shared-proto --features schema --example gen-schemas
//!
//! `shared-proto/tests/schemas.rs` fails while a checked-in file differs from this output.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (path, text) in shared_proto::schema::files() {
        let file = root.join(path);
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, text)?;
        println!("wrote {path}");
    }
    Ok(())
}
