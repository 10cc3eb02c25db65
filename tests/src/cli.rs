//! Argument parsing for the harness and bench binaries: clap, with its errors cut to one line.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

/// Parses this process's arguments. `Err` carries the exit code to return at once: 0 after
/// `--help`/`--version` were printed, 2 after a one-line error on stderr
/// (`NAME: unexpected argument '--x' found (see --help)`): clap's own rendering adds a usage
/// block, which buries the message in test and script logs.
pub fn parse<T: Parser>(name: &str) -> Result<T, ExitCode> {
    parse_from(name, std::env::args_os())
}

/// [`parse`] over given arguments (the first is the program name).
pub fn parse_from<T, I, A>(name: &str, args: I) -> Result<T, ExitCode>
where
    T: Parser,
    I: IntoIterator<Item = A>,
    A: Into<std::ffi::OsString> + Clone,
{
    T::try_parse_from(args).map_err(|err| match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            if err.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            eprintln!("{name}: {} (see --help)", one_line(&err.to_string()));
            ExitCode::from(2)
        }
    })
}

/// clap's first paragraph on one line, without its `error: ` prefix (a list such as the
/// missing required arguments follows its heading on indented lines).
fn one_line(rendered: &str) -> String {
    let text = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    match text.strip_prefix("error: ") {
        Some(rest) => rest.to_string(),
        None if text.is_empty() => "invalid arguments".to_string(),
        None => text,
    }
}

/// A clap value parser for whole numbers of at least 1 (`usize` has no built-in range).
pub fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("must be a whole number (got {text:?})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Parser, Debug)]
    struct Demo {
        /// A count.
        #[arg(long, value_parser = at_least_one, default_value_t = 3)]
        count: usize,
    }

    #[test]
    fn a_bad_value_is_an_error_with_exit_status_2() {
        let err = parse_from::<Demo, _, _>("demo", ["demo", "--count", "0"]).unwrap_err();
        assert_eq!(format!("{err:?}"), format!("{:?}", ExitCode::from(2)));
        assert_eq!(
            parse_from::<Demo, _, _>("demo", ["demo", "--count", "7"])
                .map(|d| d.count)
                .ok(),
            Some(7)
        );
    }

    #[test]
    fn only_the_first_paragraph_of_a_clap_error_is_kept_on_one_line_without_its_prefix() {
        assert_eq!(
            one_line("error: unexpected argument '--x' found\n\n  tip: ...\n\nUsage: demo"),
            "unexpected argument '--x' found"
        );
        assert_eq!(
            one_line("error: the following required arguments were not provided:\n  --a <A>\n  --b <B>\n\nUsage: x"),
            "the following required arguments were not provided: --a <A> --b <B>"
        );
    }
}
