//! The docs' promises, checked on the docs themselves: every relative link
//! in README.md and docs/*.md resolves (anchors included, by GitHub's
//! slug rules), every doc opens with a summary, the README stays a guide
//! that links every doc, its test command is CI's, and docs/architecture.md
//! names every top-level module. Markdown is read with a real parser, so
//! code blocks, inline code and link syntax are what GitHub sees.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// README.md and every docs/*.md, as paths relative to the repository.
fn markdown_files() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(root()).expect("under the root").to_owned())
        .collect();
    docs.sort();
    out.extend(docs);
    out
}

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(
        text,
        Options::ENABLE_TABLES | Options::ENABLE_HEADING_ATTRIBUTES,
    )
}

/// GitHub's anchor for a heading's text: lowercase; letters, digits, `-`
/// and `_` kept; each space a hyphen (runs are not collapsed); everything
/// else dropped.
fn slug(heading: &str) -> String {
    heading
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Every anchor of a Markdown text: one per heading, the second of a slug
/// getting `-1`, the third `-2`, as GitHub numbers repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut heading: Option<String> = None;
    for event in parser(text) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    let base = slug(h.trim());
                    let n = seen.entry(base.clone()).or_insert(0);
                    out.insert(if *n == 0 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    });
                    *n += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// Every link and image destination of a Markdown text.
fn links(text: &str) -> Vec<String> {
    parser(text)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => {
                Some(dest_url.into_string())
            }
            _ => None,
        })
        .collect()
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Why `link`, written in `from`, does not resolve; `None` when it does
/// or is not relative.
fn broken(from: &Path, link: &str) -> Option<String> {
    let scheme = link
        .split_once(':')
        .is_some_and(|(s, _)| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphabetic()));
    if scheme || link.starts_with("//") {
        return None;
    }
    let (path, anchor) = match link.split_once('#') {
        Some((p, a)) => (p, Some(a)),
        None => (link, None),
    };
    let target = if path.is_empty() {
        from.to_owned()
    } else {
        normalise(&from.parent().unwrap_or(Path::new("")).join(path))
    };
    let full = root().join(&target);
    if !full.exists() {
        return Some(format!("{} does not exist", target.display()));
    }
    let anchor = anchor.filter(|a| !a.is_empty())?;
    if target.extension().is_none_or(|e| e != "md") {
        return None;
    }
    let known = anchors(&read(&full));
    (!known.contains(anchor)).then(|| format!("{} has no heading #{anchor}", target.display()))
}

#[test]
fn slugs_follow_githubs_rules() {
    assert_eq!(
        slug("Service catalogue (`config/services.yaml`)"),
        "service-catalogue-configservicesyaml"
    );
    assert_eq!(
        slug("Scenario A — AZ failure (`rules/az-failure.yaml`)"),
        "scenario-a--az-failure-rulesaz-failureyaml"
    );
    assert_eq!(
        slug("The `dr_signal` convention"),
        "the-dr_signal-convention"
    );
    assert_eq!(
        slug("Who may look, and who may act"),
        "who-may-look-and-who-may-act"
    );
    let text = "# A\n\n## Notes\n\n```\n# Notes\n```\n\n## Notes\n\n### Notes\n";
    let got: Vec<String> = anchors(text).into_iter().collect();
    // The `# Notes` inside the code block is not a heading.
    assert_eq!(got, ["a", "notes", "notes-1", "notes-2"]);
}

#[test]
fn a_broken_link_or_anchor_is_found() {
    let from = Path::new("docs/rules.md");
    assert_eq!(broken(from, "https://cel.dev"), None);
    assert_eq!(broken(from, "rules-catalogue.md"), None);
    assert_eq!(broken(from, "#precedence-and-holds"), None);
    assert_eq!(
        broken(from, "docs/rules-catalogue.md"),
        Some("docs/docs/rules-catalogue.md does not exist".to_owned())
    );
    assert_eq!(
        broken(from, "#no-such-heading"),
        Some("docs/rules.md has no heading #no-such-heading".to_owned())
    );
}

#[test]
fn every_relative_link_resolves_anchors_included() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for file in markdown_files() {
        for link in links(&read(&root().join(&file))) {
            checked += 1;
            if let Some(why) = broken(&file, &link) {
                bad.push(format!("{}: ({link}): {why}", file.display()));
            }
        }
    }
    assert!(bad.is_empty(), "broken links:\n{}", bad.join("\n"));
    assert!(checked > 100, "walked the docs: {checked} links");
}

/// The kinds of a text's top-level blocks, in order (a heading's level
/// included: `h1`, `h2`, …).
fn top_blocks(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    for event in parser(text) {
        match event {
            Event::Start(tag) => {
                if depth == 0 {
                    out.push(match tag {
                        Tag::Heading { level, .. } => format!("{level}"),
                        Tag::Paragraph => "paragraph".to_owned(),
                        Tag::BlockQuote(_) => "quote".to_owned(),
                        other => format!("{other:?}"),
                    });
                }
                depth += 1;
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            // A rule or raw HTML at the top is a block without an end.
            Event::Rule if depth == 0 => out.push("rule".to_owned()),
            _ => {}
        }
    }
    out
}

#[test]
fn every_doc_opens_with_a_summary_paragraph() {
    for file in markdown_files() {
        let blocks = top_blocks(&read(&root().join(&file)));
        let opening: Vec<&str> = blocks.iter().take(3).map(String::as_str).collect();
        let ok = match opening.as_slice() {
            ["h1", "paragraph", ..] => true,
            // A placeholder: its note, then the summary.
            ["h1", "quote", "paragraph"] => true,
            _ => false,
        };
        assert!(
            ok,
            "{}: a summary paragraph right after the title; opens with {opening:?}",
            file.display()
        );
    }
}

#[test]
fn the_readme_is_a_guide_that_links_every_doc() {
    let text = read(&root().join("README.md"));
    let lines = text.lines().count();
    assert!(
        lines <= 350,
        "README.md has {lines} lines; reference goes to docs/"
    );
    let linked: BTreeSet<String> = links(&text)
        .into_iter()
        .map(|l| l.split('#').next().unwrap_or_default().to_owned())
        .collect();
    for file in markdown_files().into_iter().skip(1) {
        let rel = file.to_string_lossy().into_owned();
        assert!(linked.contains(&rel), "README.md does not link {rel}");
    }
}

#[test]
fn the_readme_runs_the_test_command_ci_runs() {
    let readme = read(&root().join("README.md"));
    let ci = read(&root().join(".ci/run"));
    // The last command of CI is the suite; the README's quick start gives it.
    let ci_test = ci
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with("cargo test"))
        .expect(".ci/run runs cargo test")
        .trim();
    let mut in_code = false;
    let mut readme_commands = Vec::new();
    for event in parser(&readme) {
        match event {
            Event::Start(Tag::CodeBlock(_)) => in_code = true,
            Event::End(TagEnd::CodeBlock) => in_code = false,
            Event::Text(t) if in_code => {
                readme_commands.extend(t.lines().map(|l| l.trim().to_owned()));
            }
            _ => {}
        }
    }
    assert!(
        readme_commands.iter().any(|l| l == ci_test),
        "README.md's quick start should give {ci_test:?}, as .ci/run runs it"
    );
}

#[test]
fn the_architecture_doc_names_every_top_level_module() {
    let doc = read(&root().join("docs/architecture.md"));
    let lib = read(&root().join("src/lib.rs"));
    let mut modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod ")?.strip_suffix(';'))
        .map(str::to_owned)
        .collect();
    assert!(modules.len() > 20, "read src/lib.rs: {modules:?}");
    // The binary's own files and folders count too (`main.rs`, `cli/`).
    for entry in std::fs::read_dir(root().join("src")).expect("src/ exists") {
        let name = entry
            .expect("readable entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(m) = name.strip_suffix(".rs") {
            if m != "lib" {
                modules.insert(m.to_owned());
            }
        } else {
            modules.insert(name);
        }
    }
    let missing: Vec<String> = modules
        .iter()
        .filter(|m| {
            let folder = root().join("src").join(m.as_str()).is_dir();
            let named = if folder {
                format!("`src/{m}/`")
            } else {
                format!("`src/{m}.rs`")
            };
            !doc.contains(&named)
        })
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "docs/architecture.md does not name these modules (as `src/NAME.rs` or `src/NAME/`): {missing:?}"
    );
}
