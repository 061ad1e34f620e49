// Embeds every language file of the web pages (web/locales) and of the bots (bots/), so
// adding a language is adding one file.
use std::fmt::Write;

/// Writes `OUT_DIR/<out>` holding `const <name>: &[(&str, &str)]` = every TOML file of
/// `dir` as (file stem, text), skipping the stems in `skip`.
fn embed(dir: &str, skip: &[&str], name: &str, out_file: &str) {
    println!("cargo:rerun-if-changed={dir}");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|_| panic!("{dir} exists"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .filter(|p| !skip.iter().any(|s| p.file_stem().is_some_and(|f| f == *s)))
        .collect();
    files.sort();
    let mut out = format!(
        "/// Every language file, as (code, TOML text).\npub const {name}: &[(&str, &str)] = &[\n"
    );
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
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join(out_file);
    std::fs::write(dest, out).unwrap();
}

fn main() {
    embed("web/locales", &[], "LOCALE_FILES", "locales.rs");
    embed("bots", &["tip"], "BOT_TEXT_FILES", "bot_texts.rs");
    println!("cargo:rerun-if-changed=bots/tip.toml");
}
