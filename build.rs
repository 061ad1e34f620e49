// Embeds every language file in web/locales, so adding a language is adding one file.
use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new("web/locales");
    println!("cargo:rerun-if-changed=web/locales");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("web/locales exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut out = String::from("/// Every language file, as (code, TOML text).\npub const LOCALE_FILES: &[(&str, &str)] = &[\n");
    for f in files {
        let code = f.file_stem().unwrap().to_string_lossy().to_string();
        let abs = std::fs::canonicalize(&f).unwrap();
        println!("cargo:rerun-if-changed={}", abs.display());
        writeln!(
            out,
            "    ({code:?}, include_str!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("locales.rs");
    std::fs::write(dest, out).unwrap();
}
