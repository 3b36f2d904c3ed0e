//! The man pages in `man/` are generated from the clap definition (names, synopses, options,
//! commands, environment, exit status) with the hand-written sections of `man/src/` kept beside
//! it; this fails when they are stale. `SALTSHIP_UPDATE_MAN=1 cargo test --test it man::` writes
//! them anew; `man -l man/saltship.1` shows one.

use std::path::Path;

use clap::CommandFactory;
use clap_mangen::roff::{bold, italic, roman, Roff};
use clap_mangen::Man;

/// The hand-written part of saltship(1): the event fields, examples, environment beyond the
/// options, files. `@ENVIRONMENT@` marks where the options' variables go,
/// `@ENVIRONMENT_COMMON@` the variables that are no option's, `@FILES@` the files every
/// command uses.
const HAND: &str = include_str!("../../man/src/saltship.1.in");
const ENVIRONMENT_COMMON: &str = include_str!("../../man/src/environment.1.in");
const FILES: &str = include_str!("../../man/src/files.1.in");

/// The hand-written part of each command's page: a first line `.\" NAME: <what it does>`
/// for the NAME section, then EXAMPLES, ENVIRONMENT, FILES and EXIT STATUS, with the same
/// markers as `HAND`.
fn hand(command: &str) -> &'static str {
    match command {
        "backfill" => include_str!("../../man/src/saltship-backfill.1.in"),
        "sync" => include_str!("../../man/src/saltship-sync.1.in"),
        "watch" => include_str!("../../man/src/saltship-watch.1.in"),
        "check" => include_str!("../../man/src/saltship-check.1.in"),
        "config" => include_str!("../../man/src/saltship-config.1.in"),
        other => panic!("no man/src/saltship-{other}.1.in"),
    }
}

/// The markers of a hand-written part filled in; `env` is the rendered ENVIRONMENT items.
fn fill(hand: &str, env: &str) -> String {
    hand.replace("@ENVIRONMENT@\n", env)
        .replace("@ENVIRONMENT_COMMON@\n", ENVIRONMENT_COMMON)
        .replace("@FILES@\n", FILES)
}

/// The `.TP` items of an ENVIRONMENT list, without the preamble and the section line.
fn env_items(vars: &[(String, String)]) -> String {
    let env = list("ENVIRONMENT", vars).render();
    let env = env.splitn(3, '\n').nth(2).unwrap_or_default().to_owned();
    env.strip_prefix(".SH ENVIRONMENT\n")
        .unwrap_or(&env)
        .to_owned()
}

/// One rendered piece; roff's preamble is kept only in the first piece of a page.
fn piece(page: &mut String, render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>) {
    let mut buf = Vec::new();
    render(&mut buf).expect("render man page");
    let text = String::from_utf8(buf).expect("UTF-8");
    let body = if page.is_empty() {
        text.as_str()
    } else {
        text.splitn(3, '\n').nth(2).unwrap_or_default()
    };
    page.push_str(body);
}

fn roff(page: &mut String, roff: &Roff) {
    piece(page, |w| roff.to_writer(w));
}

/// `.SH name` and `.TP` paragraphs of bold term and plain text.
fn list(name: &str, items: &[(String, String)]) -> Roff {
    let mut r = Roff::default();
    r.control("SH", [name]);
    for (term, text) in items {
        r.control("TP", [])
            .text([bold(term.as_str())])
            .text([roman(text.as_str())]);
    }
    r
}

/// The "Exit status:" lines of a command's after-help as a section.
fn exit_status(cmd: &clap::Command) -> Roff {
    let text = cmd
        .get_after_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    let mut items: Vec<(String, String)> = Vec::new();
    for line in text.lines().skip(1) {
        match line.trim().split_once("  ") {
            // "  3  could not deliver", or the continuation of the line before.
            Some((code, what)) if line.starts_with("  ") && !line.starts_with("   ") => {
                items.push((code.to_owned(), what.trim().to_owned()));
            }
            _ => {
                if let Some((_, what)) = items.last_mut() {
                    what.push(' ');
                    what.push_str(line.trim());
                }
            }
        }
    }
    list("EXIT STATUS", &items)
}

fn synopsis(text: &[(&str, bool)]) -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["SYNOPSIS"]);
    r.text(
        text.iter()
            .map(|(t, b)| if *b { bold(*t) } else { italic(*t) })
            .collect::<Vec<_>>(),
    );
    r
}

fn see_also(names: &[String], extra: &str) -> Roff {
    let mut r = Roff::default();
    r.control("SH", ["SEE ALSO"]);
    let mut refs: Vec<String> = names.iter().map(|n| format!("{n}(1)")).collect();
    refs.extend(
        extra
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(str::to_owned),
    );
    r.text([roman(refs.join(", "))]);
    r
}

fn commands(top: &clap::Command) -> Vec<&clap::Command> {
    top.get_subcommands()
        .filter(|s| s.get_name() != "help")
        .collect()
}

/// Every `SALTSHIP_*` variable of these commands, with its option and the first sentence of
/// its help.
fn environment(cmds: &[&clap::Command]) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = Vec::new();
    for sub in cmds {
        for arg in sub.get_arguments() {
            let (Some(env), Some(long)) = (arg.get_env(), arg.get_long()) else {
                continue;
            };
            let env = env.to_string_lossy().into_owned();
            if vars.iter().any(|(e, _)| *e == env) {
                continue;
            }
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            vars.push((
                env,
                format!("--{long}: {}", help.split(" [").next().unwrap_or(&help)),
            ));
        }
    }
    vars.sort();
    vars
}

/// `saltship.1` and one `saltship-<command>.1` per command, as git does it.
fn pages() -> Vec<(String, String)> {
    let mut top = saltship::cli::Cli::command();
    // Global options (-v, -q) reach the commands' pages only once the command is built.
    top.build();
    let names: Vec<String> = commands(&top)
        .iter()
        .map(|s| format!("saltship-{}", s.get_name()))
        .collect();
    let mut page = String::new();
    let man = Man::new(top.clone());
    piece(&mut page, |w| man.render_title(w));
    piece(&mut page, |w| man.render_name_section(w));
    roff(
        &mut page,
        &synopsis(&[
            ("saltship", true),
            (" [-v|-q] ", false),
            ("COMMAND", false),
            (" [OPTIONS]", false),
        ]),
    );
    piece(&mut page, |w| man.render_description_section(w));
    let cmds: Vec<(String, String)> = commands(&top)
        .iter()
        .map(|s| {
            let about = s.get_about().map(|a| a.to_string()).unwrap_or_default();
            (
                format!("saltship {}", s.get_name()),
                format!("{about}. See saltship-{}(1).", s.get_name()),
            )
        })
        .collect();
    roff(&mut page, &list("COMMANDS", &cmds));
    piece(&mut page, |w| man.render_options_section(w));
    let env = env_items(&environment(&commands(&top)));
    page.push_str(&fill(HAND, &env));
    roff(&mut page, &exit_status(&top));
    roff(
        &mut page,
        &see_also(&names, "journalctl(1), systemd.exec(5), salt-master(1)"),
    );
    let mut pages = vec![("saltship.1".to_owned(), page)];
    for sub in commands(&top) {
        let name = format!("saltship-{}", sub.get_name());
        // clap keeps 'static names; a test may leak a few short strings.
        let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
        let man = Man::new(sub.clone().name(leaked).version(env!("CARGO_PKG_VERSION")));
        let mut page = String::new();
        piece(&mut page, |w| man.render_title(w));
        let hand = hand(sub.get_name());
        let (first, rest) = hand.split_once('\n').unwrap_or_default();
        let what = first
            .strip_prefix(".\\\" NAME: ")
            .unwrap_or_else(|| panic!("{name}: the hand-written part starts without NAME"));
        let mut title = Roff::default();
        title
            .control("SH", ["NAME"])
            .text([roman(format!("{name} - {what}"))]);
        roff(&mut page, &title);
        let cmd = format!("saltship {}", sub.get_name());
        let mut form = vec![(cmd.as_str(), true)];
        if sub.get_name() == "backfill" {
            form.push((" [--since T] [--until T]", false));
        }
        form.push((" [OPTIONS]", false));
        roff(&mut page, &synopsis(&form));
        piece(&mut page, |w| man.render_description_section(w));
        piece(&mut page, |w| man.render_options_section(w));
        page.push_str(&fill(rest, &env_items(&environment(&[sub]))));
        let others: Vec<String> = std::iter::once("saltship".to_owned())
            .chain(names.iter().filter(|n| **n != name).cloned())
            .collect();
        roff(&mut page, &see_also(&others, ""));
        pages.push((format!("{name}.1"), page));
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
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            current == page,
            "man/{file} is stale: run SALTSHIP_UPDATE_MAN=1 cargo test --test it man::"
        );
    }
}

#[test]
fn the_main_page_has_every_section_and_no_page_that_does_not_exist() {
    let pages = pages();
    let main = &pages[0].1;
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "\"EVENT FIELDS\"",
        "EXAMPLES",
        "ENVIRONMENT",
        "FILES",
        "\"EXIT STATUS\"",
        "\"SEE ALSO\"",
    ] {
        assert!(main.contains(&format!(".SH {section}\n")), "no {section}");
    }
    assert!(
        !main.contains("saltship\\-help"),
        "no saltship-help(1) page exists"
    );
    for var in [
        "SALTSHIP_DRY_RUN",
        "SALTSHIP_TARGET",
        "RUST_LOG",
        "NOTIFY_SOCKET",
        "SSL_CERT_FILE",
    ] {
        assert!(main.contains(var), "{var} in ENVIRONMENT");
    }
    assert!(
        main.contains("SALTSHIP_KAFKA_PASSWORD"),
        "SALTSHIP_KAFKA_PASSWORD in ENVIRONMENT"
    );
    for (file, page) in &pages[1..] {
        assert!(page.contains("\\-\\-quiet"), "{file} lists -q");
        assert!(page.contains("[OPTIONS]"), "{file} synopsis");
        for section in [
            "NAME",
            "EXAMPLES",
            "ENVIRONMENT",
            "FILES",
            "\"EXIT STATUS\"",
        ] {
            assert!(
                page.contains(&format!(".SH {section}\n")),
                "{file}: no {section}"
            );
        }
        for needed in [
            "state.journal",
            "SALTSHIP_KAFKA_PASSWORD",
            "SALTSHIP_STATE_FILE",
        ] {
            assert!(page.contains(needed), "{file}: no {needed}");
        }
        // NAME says in a few words what DESCRIPTION says in full.
        let name = page
            .split(".SH NAME\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .expect("a NAME line");
        let description = page
            .split(".SH DESCRIPTION\n")
            .nth(1)
            .and_then(|s| s.lines().next())
            .expect("a DESCRIPTION line");
        assert!(
            !name.contains(description),
            "{file}: NAME is the description"
        );
        let exit = page
            .split(".SH \"EXIT STATUS\"\n")
            .nth(1)
            .expect("EXIT STATUS");
        let exit = exit.split(".SH ").next().unwrap_or_default();
        if !file.starts_with("saltship-check") {
            assert!(
                !exit.contains("check failed"),
                "{file}: check's exit status"
            );
        }
    }
}

#[test]
fn cli_definition_is_consistent() {
    saltship::cli::Cli::command().debug_assert();
}
