//! Writes Signpost's CRDs as YAML into a directory (default `charts/signpost/crds`), or to
//! stdout with `-`. `just crds` runs it; a test fails when the committed files differ.

use std::path::PathBuf;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "charts/signpost/crds".into());
    let rendered = signpost_crds::rendered_crds()?;
    if target == "-" {
        for (_, yaml) in rendered {
            print!("---\n{yaml}");
        }
        return Ok(());
    }
    let dir = PathBuf::from(target);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (file, yaml) in rendered {
        let path = dir.join(file);
        std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
