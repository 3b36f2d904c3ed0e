//! The man pages in `man/` are generated from the clap definition; this fails when they are
//! stale. `SALTSHIP_UPDATE_MAN=1 cargo test --test man` writes them anew.

use std::path::Path;

use clap::CommandFactory;

fn render(cmd: clap::Command) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut buf)
        .expect("render man page");
    buf
}

/// `saltship.1` and one `saltship-<command>.1` per subcommand, as git does it.
fn pages() -> Vec<(String, Vec<u8>)> {
    let top = saltship::cli::Cli::command();
    let mut pages = vec![("saltship.1".to_owned(), render(top.clone()))];
    for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
        // clap keeps 'static names; a test may leak two short strings.
        let name: &'static str = Box::leak(format!("saltship-{}", sub.get_name()).into_boxed_str());
        let page = sub.clone().name(name).version(env!("CARGO_PKG_VERSION"));
        pages.push((format!("{name}.1"), render(page)));
    }
    pages
}

#[test]
fn man_pages_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("SALTSHIP_UPDATE_MAN").is_some();
    for (file, page) in pages() {
        let path = dir.join(&file);
        if update {
            std::fs::write(&path, &page).expect("write man page");
        }
        let current = std::fs::read(&path).unwrap_or_default();
        assert!(
            current == page,
            "man/{file} is stale: run SALTSHIP_UPDATE_MAN=1 cargo test --test man"
        );
    }
}

#[test]
fn cli_definition_is_consistent() {
    saltship::cli::Cli::command().debug_assert();
}
