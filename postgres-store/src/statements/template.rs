//! Statement variants from the complete statements in `sql/`.
//!
//! A file of `sql/` is a whole statement, readable as the server gets it.
//! Where the store runs variants of one statement, comment lines mark the
//! lines that only some variants have (see `sql/README.md`):
//!
//! - `-- if NAME` or `-- if NAME or NAME ...`, up to `-- end if`: lines
//!   that a variant has only when it names one of the names; sections nest,
//!   and a line is kept when every section around it is;
//! - `-- for each WHAT, naming NAME, joined by WORDS` (or without
//!   `naming NAME`), up to `-- end for`: lines that a variant has once per
//!   copy, the copies joined by a line of `WORDS`. The parameters of the
//!   template's `-- for each` sections are those of one copy: the k-th copy
//!   (from 0) has them numbered after those of the copies before it, and
//!   from the second copy on the name `NAME` is `NAME_k`. With one copy,
//!   the lines are as written.
//!
//! The statement sent is the variant without its comment lines, blank
//! lines and indentation, which the server would otherwise receive, scan
//! and keep with every prepared statement (no string literal in `sql/`
//! spans lines, so none loses its spaces), and with its `{name}` places
//! filled in.

/// The variant of `template` that has the sections named in `sections`
/// and `copies` copies of each `-- for each` section, as it is sent.
///
/// # Panics
/// When `template` is malformed (an `-- end` without its start, or a start
/// without its end): the templates are part of the build, and a unit test
/// expands every one.
pub(crate) fn expand(template: &str, sections: &[&str], copies: usize) -> String {
    let mut sql = String::with_capacity(template.len() * copies.max(1));
    let mut kept: Vec<bool> = Vec::new();
    let params = params_per_copy(template);
    let mut lines = template.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if let Some(names) = line.strip_prefix("-- if ") {
            kept.push(names.split(" or ").any(|name| sections.contains(&name)));
        } else if line == "-- end if" {
            kept.pop().expect("an `-- end if` closes an `-- if`");
        } else if let Some(what) = line.strip_prefix("-- for each ") {
            let (what, joint) = what
                .split_once(", joined by ")
                .expect("a `-- for each` says what joins its copies");
            let name = what.split_once(", naming ").map(|(_, name)| name);
            let body: Vec<&str> = lines
                .by_ref()
                .map(str::trim)
                .take_while(|line| *line != "-- end for")
                .filter(|line| !line.is_empty() && !line.starts_with("--"))
                .collect();
            if kept.iter().all(|kept| *kept) {
                for copy in 0..copies {
                    if copy > 0 {
                        sql.push_str(joint);
                        sql.push('\n');
                    }
                    for line in &body {
                        sql.push_str(&renumber(line, copy, params, name));
                        sql.push('\n');
                    }
                }
            }
        } else if !line.is_empty() && !line.starts_with("--") && kept.iter().all(|kept| *kept) {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    assert!(kept.is_empty(), "every `-- if` ends with `-- end if`");
    sql
}

/// `sql` with every `{name}` of `values` replaced by its value.
pub(crate) fn fill(sql: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(sql.to_owned(), |sql, (name, value)| {
        sql.replace(&format!("{{{name}}}"), value)
    })
}

/// The number of parameters of one copy: the highest `$n` in the
/// template's `-- for each` sections.
fn params_per_copy(template: &str) -> usize {
    let mut inside = false;
    let mut highest = 0;
    for line in template.lines().map(str::trim) {
        if line.starts_with("-- for each ") {
            inside = true;
        } else if line == "-- end for" {
            inside = false;
        } else if inside && !line.starts_with("--") {
            highest = highest.max(highest_param(line));
        }
    }
    highest
}

/// The highest `$n` in `line`, 0 when there is none.
fn highest_param(line: &str) -> usize {
    line.split('$')
        .skip(1)
        .filter_map(|after| leading_number(after).map(|(number, _)| number))
        .max()
        .unwrap_or(0)
}

/// The number `text` starts with, and its length in bytes.
fn leading_number(text: &str) -> Option<(usize, usize)> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    text[..digits].parse().ok().map(|number| (number, digits))
}

/// `line` as copy `copy` has it: each `$n` moved on by `copy * params`,
/// and from the second copy on, each `name` (a whole name) is `name_{copy}`.
fn renumber(line: &str, copy: usize, params: usize, name: Option<&str>) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut rest = line;
    while let Some(at) = rest.find(|c: char| c == '$' || c.is_ascii_alphanumeric() || c == '_') {
        out.push_str(&rest[..at]);
        let from = &rest[at..];
        if let Some(after) = from.strip_prefix('$') {
            match leading_number(after) {
                Some((number, digits)) => {
                    out.push_str(&format!("${}", number + copy * params));
                    rest = &after[digits..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
            continue;
        }
        let length = from.bytes().take_while(|&byte| is_name_byte(byte)).count();
        let word = &from[..length];
        out.push_str(word);
        if copy > 0 && Some(word) == name {
            out.push_str(&format!("_{copy}"));
        }
        rest = &from[length..];
    }
    out.push_str(rest);
    out
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "-- A statement.
SELECT a
-- if x
     , b -- the b
-- if y or z
     , c
-- end if
-- end if
-- if y
     , d
-- end if
  FROM t

 WHERE k = $1
";

    #[test]
    fn sections_keep_their_lines_only_in_the_variants_that_name_them() {
        assert_eq!(expand(TEMPLATE, &[], 1), "SELECT a\nFROM t\nWHERE k = $1\n");
        assert_eq!(
            expand(TEMPLATE, &["x"], 1),
            "SELECT a\n, b -- the b\nFROM t\nWHERE k = $1\n"
        );
        assert_eq!(
            expand(TEMPLATE, &["x", "z"], 1),
            "SELECT a\n, b -- the b\n, c\nFROM t\nWHERE k = $1\n"
        );
        assert_eq!(
            expand(TEMPLATE, &["y"], 1),
            "SELECT a\n, d\nFROM t\nWHERE k = $1\n",
            "a section inside one that is left out goes with it"
        );
    }

    #[test]
    fn copies_are_joined_and_numbered_after_each_other() {
        // Three parameters per copy, over both sections.
        let template = "WITH
-- for each row, naming r, joined by ,
  r AS (SELECT $1::text AS k, $2::int AS v)
-- end for
-- for each row, naming r, joined by UNION ALL
SELECT k, v, $3 FROM r
-- end for
";
        assert_eq!(
            expand(template, &[], 3),
            "WITH
r AS (SELECT $1::text AS k, $2::int AS v)
,
r_1 AS (SELECT $4::text AS k, $5::int AS v)
,
r_2 AS (SELECT $7::text AS k, $8::int AS v)
SELECT k, v, $3 FROM r
UNION ALL
SELECT k, v, $6 FROM r_1
UNION ALL
SELECT k, v, $9 FROM r_2
"
        );
        assert_eq!(
            expand(template, &[], 1),
            "WITH\nr AS (SELECT $1::text AS k, $2::int AS v)\nSELECT k, v, $3 FROM r\n",
            "one copy is the template"
        );
    }

    #[test]
    fn only_whole_names_and_parameters_are_renumbered() {
        assert_eq!(
            renumber("SELECT s, s.v, s_x, xs, $10, '$' FROM s", 2, 11, Some("s")),
            "SELECT s_2, s_2.v, s_x, xs, $32, '$' FROM s_2"
        );
        assert_eq!(renumber("SELECT s, $1", 0, 11, Some("s")), "SELECT s, $1");
        assert_eq!(highest_param("$1, $12::text, $3"), 12);
        assert_eq!(highest_param("no parameters"), 0);
    }

    #[test]
    fn places_are_filled_in() {
        assert_eq!(
            fill(
                "{schema}.t % {n} = {i}",
                &[("schema", "\"s\""), ("n", "4"), ("i", "1")]
            ),
            "\"s\".t % 4 = 1"
        );
    }

    #[test]
    #[should_panic(expected = "`-- if` ends")]
    fn an_unclosed_section_is_refused() {
        expand("SELECT 1\n-- if x\n, 2\n", &[], 1);
    }
}
