//! A renderer for the small part of Helm's template language that the chart's object names
//! are written in, so that names can be checked without Helm (which this machine lacks).
//!
//! What it renders: the `define`s of `_helpers.tpl` and one-line snippets such as a
//! `name: {{ include "stickycanary.fullname" . }}` value, against a context built like Helm's
//! (`.Values` from values.yaml plus overrides, `.Release.Name`/`.Release.Namespace`,
//! `.Chart.Name`/`.Chart.Version`/`.Chart.AppVersion` from Chart.yaml). How: Go-template
//! actions with `{{-`/`-}}` trimming, `if`/`else if`/`else`/`end`, comments, pipelines,
//! parenthesised sub-pipelines, `.`/`$` (always the root context: the name helpers are only
//! ever called with it) and the Sprig functions the name helpers use, with Sprig's
//! semantics: `include`, `printf` (%s, %d, %v), `trunc`, `trimSuffix`, `default`,
//! `contains`. Anything else (another function, a `range`, a `$variable`) is an error that
//! names it, so a helper growing past this subset fails the test instead of rendering wrong.

use std::collections::BTreeMap;

use serde_yaml::Value as Yaml;

/// A parsed template: text and actions, with `if` blocks nested.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Output(String),
    If {
        /// (condition, body) per `if` / `else if`; the `else` body has no condition.
        branches: Vec<(Option<String>, Vec<Node>)>,
    },
}

/// One `{{ ... }}` or the text between two, after whitespace trimming.
#[derive(Debug, Clone)]
enum Segment {
    Text(String),
    Action(String),
}

/// The text and actions of a template, `{{-` and `-}}` trimming applied, comments dropped.
fn segments(template: &str) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    let mut trim_next_text = false;
    while let Some(start) = rest.find("{{") {
        let mut text = &rest[..start];
        if trim_next_text {
            text = text.trim_start();
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or("a `{{` is never closed")?;
        let mut inside = &after[..end];
        if let Some(stripped) = inside.strip_prefix('-') {
            text = text.trim_end();
            inside = stripped;
        }
        trim_next_text = false;
        if let Some(stripped) = inside.strip_suffix('-') {
            trim_next_text = true;
            inside = stripped;
        }
        if !text.is_empty() {
            out.push(Segment::Text(text.to_string()));
        }
        let inside = inside.trim();
        if !(inside.starts_with("/*") && inside.ends_with("*/")) {
            out.push(Segment::Action(inside.to_string()));
        }
        rest = &after[end + 2..];
    }
    let text = if trim_next_text {
        rest.trim_start()
    } else {
        rest
    };
    if !text.is_empty() {
        out.push(Segment::Text(text.to_string()));
    }
    Ok(out)
}

/// The first word of an action (`if`, `end`, `include`, ...) and the rest.
fn keyword(action: &str) -> (&str, &str) {
    let action = action.trim();
    match action.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (action, ""),
    }
}

/// Nodes up to the `end`/`else` that closes the current block (left in `segments[*pos]`).
fn parse_nodes(segments: &[Segment], pos: &mut usize) -> Result<Vec<Node>, String> {
    let mut nodes = Vec::new();
    while let Some(segment) = segments.get(*pos) {
        match segment {
            Segment::Text(text) => nodes.push(Node::Text(text.clone())),
            Segment::Action(action) => match keyword(action) {
                ("end" | "else", _) => return Ok(nodes),
                ("if", condition) => {
                    *pos += 1;
                    nodes.push(parse_if(segments, pos, condition)?);
                }
                ("range" | "with" | "define" | "block" | "template", _) => {
                    return Err(format!("the renderer does not handle `{{{{ {action} }}}}`"));
                }
                _ => nodes.push(Node::Output(action.clone())),
            },
        }
        *pos += 1;
    }
    Ok(nodes)
}

/// The branches of an `if` whose condition has been read; leaves `*pos` on its `end`.
fn parse_if(segments: &[Segment], pos: &mut usize, condition: &str) -> Result<Node, String> {
    let mut branches = Vec::new();
    let mut condition = Some(condition.to_string());
    loop {
        let body = parse_nodes(segments, pos)?;
        branches.push((condition.take(), body));
        let Some(Segment::Action(closing)) = segments.get(*pos) else {
            return Err("an `if` is never closed".into());
        };
        match keyword(closing) {
            ("end", _) => return Ok(Node::If { branches }),
            ("else", rest) => {
                *pos += 1;
                match keyword(rest) {
                    ("if", next) => condition = Some(next.to_string()),
                    ("", _) => condition = None,
                    _ => return Err(format!("odd `{{{{ {closing} }}}}`")),
                }
            }
            _ => return Err(format!("odd `{{{{ {closing} }}}}`")),
        }
    }
}

fn parse(template: &str) -> Result<Vec<Node>, String> {
    let segments = segments(template)?;
    let mut pos = 0;
    let nodes = parse_nodes(&segments, &mut pos)?;
    if pos < segments.len() {
        return Err(format!("unexpected {:?}", segments[pos]));
    }
    Ok(nodes)
}

/// The chart's named templates (the `define`s of `_helpers.tpl`) and the render context.
pub struct Chart {
    defines: BTreeMap<String, Vec<Node>>,
    context: Yaml,
}

impl Chart {
    /// `helpers`: the text of `_helpers.tpl`. `context`: `{Values, Release, Chart}`.
    pub fn new(helpers: &str, context: Yaml) -> Result<Self, String> {
        let segments = segments(helpers)?;
        let mut defines = BTreeMap::new();
        let mut pos = 0;
        while let Some(segment) = segments.get(pos) {
            pos += 1;
            let Segment::Action(action) = segment else {
                continue; // text between defines is not output
            };
            let ("define", name) = keyword(action) else {
                return Err(format!("`{{{{ {action} }}}}` outside a define"));
            };
            let name = name.trim_matches('"').to_string();
            let body = parse_nodes(&segments, &mut pos)?;
            match segments.get(pos) {
                Some(Segment::Action(end)) if end == "end" => pos += 1,
                _ => return Err(format!("define {name:?} never ends")),
            }
            defines.insert(name, body);
        }
        Ok(Chart { defines, context })
    }

    /// `template` (text with actions) rendered against the chart's context.
    pub fn render(&self, template: &str) -> Result<String, String> {
        self.render_nodes(&parse(template)?)
    }

    fn render_nodes(&self, nodes: &[Node]) -> Result<String, String> {
        let mut out = String::new();
        for node in nodes {
            match node {
                Node::Text(text) => out.push_str(text),
                Node::Output(action) => out.push_str(&scalar(&self.eval(action)?)),
                Node::If { branches } => {
                    for (condition, body) in branches {
                        let taken = match condition {
                            Some(condition) => truthy(&self.eval(condition)?),
                            None => true,
                        };
                        if taken {
                            out.push_str(&self.render_nodes(body)?);
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn eval(&self, pipeline: &str) -> Result<Yaml, String> {
        let tokens = tokens(pipeline)?;
        let mut pos = 0;
        let value = self.eval_pipeline(&tokens, &mut pos)?;
        if pos != tokens.len() {
            return Err(format!("trailing {:?} in `{pipeline}`", &tokens[pos..]));
        }
        Ok(value)
    }

    /// `command | command | ...`: each result becomes the last argument of the next.
    fn eval_pipeline(&self, tokens: &[Token], pos: &mut usize) -> Result<Yaml, String> {
        let mut piped: Option<Yaml> = None;
        loop {
            let mut operands = Vec::new();
            while let Some(token) = tokens.get(*pos) {
                match token {
                    Token::Pipe | Token::Close => break,
                    Token::Open => {
                        *pos += 1;
                        let value = self.eval_pipeline(tokens, pos)?;
                        if tokens.get(*pos) != Some(&Token::Close) {
                            return Err("a `(` is never closed".into());
                        }
                        operands.push(Operand::Value(value));
                    }
                    Token::Word(word) => operands.push(self.operand(word)?),
                }
                *pos += 1;
            }
            piped = Some(self.eval_command(operands, piped)?);
            if tokens.get(*pos) != Some(&Token::Pipe) {
                return piped.ok_or_else(|| "empty pipeline".to_string());
            }
            *pos += 1;
        }
    }

    fn operand(&self, word: &str) -> Result<Operand, String> {
        if let Some(text) = word.strip_prefix('"') {
            return Ok(Operand::Value(Yaml::String(text.to_string())));
        }
        if let Ok(number) = word.parse::<i64>() {
            return Ok(Operand::Value(Yaml::Number(number.into())));
        }
        if word == "." || word == "$" {
            return Ok(Operand::Value(self.context.clone()));
        }
        if let Some(path) = word.strip_prefix('.').or_else(|| word.strip_prefix("$.")) {
            let value = path
                .split('.')
                .try_fold(&self.context, |value, key| value.get(key))
                .cloned()
                .unwrap_or(Yaml::Null);
            return Ok(Operand::Value(value));
        }
        if word.starts_with('$') {
            return Err(format!("the renderer has no variable {word}"));
        }
        Ok(Operand::Function(word.to_string()))
    }

    fn eval_command(&self, operands: Vec<Operand>, piped: Option<Yaml>) -> Result<Yaml, String> {
        let mut operands = operands.into_iter();
        let function = match operands.next() {
            Some(Operand::Function(name)) => name,
            Some(Operand::Value(value)) if piped.is_none() && operands.as_slice().is_empty() => {
                return Ok(value)
            }
            other => return Err(format!("cannot evaluate {other:?} with arguments")),
        };
        let mut args: Vec<Yaml> = operands
            .map(|operand| match operand {
                Operand::Value(value) => Ok(value),
                Operand::Function(name) => Err(format!("{name} used as an argument")),
            })
            .collect::<Result<_, _>>()?;
        args.extend(piped);
        self.call(&function, &args)
    }

    /// The Sprig/Helm functions the name helpers use, with their Go semantics.
    fn call(&self, function: &str, args: &[Yaml]) -> Result<Yaml, String> {
        let text = |index: usize| -> Result<String, String> {
            args.get(index)
                .map(scalar)
                .ok_or_else(|| format!("{function}: argument {index} missing"))
        };
        let result = match (function, args.len()) {
            ("include", 2) => {
                let name = text(0)?;
                let body = self
                    .defines
                    .get(&name)
                    .ok_or_else(|| format!("no define {name:?}"))?;
                self.render_nodes(body)?
            }
            ("printf", _) if !args.is_empty() => printf(&text(0)?, &args[1..])?,
            // Sprig's trunc cuts to the first n bytes (the chart's names are ASCII).
            ("trunc", 2) => {
                let length: usize = text(0)?.parse().map_err(|e| format!("trunc: {e}"))?;
                text(1)?.chars().take(length).collect()
            }
            // strings.TrimSuffix: one occurrence, not a repeated trim.
            ("trimSuffix", 2) => {
                let (suffix, value) = (text(0)?, text(1)?);
                value.strip_suffix(&suffix).unwrap_or(&value).to_string()
            }
            ("default", 2) => {
                return Ok(if truthy(&args[1]) {
                    args[1].clone()
                } else {
                    args[0].clone()
                })
            }
            ("contains", 2) => return Ok(Yaml::Bool(text(1)?.contains(&text(0)?))),
            _ => {
                return Err(format!(
                    "the renderer has no function {function} with {} arguments",
                    args.len()
                ))
            }
        };
        Ok(Yaml::String(result))
    }
}

#[derive(Debug)]
enum Operand {
    Value(Yaml),
    Function(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A word; a string literal keeps its opening `"` (and loses the closing one).
    Word(String),
    Pipe,
    Open,
    Close,
}

fn tokens(pipeline: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = pipeline.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '|' => out.push(Token::Pipe),
            '(' => out.push(Token::Open),
            ')' => out.push(Token::Close),
            '"' => {
                let mut literal = String::from('"');
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => literal.extend(chars.next()),
                        Some(other) => literal.push(other),
                        None => return Err(format!("unclosed string in `{pipeline}`")),
                    }
                }
                out.push(Token::Word(literal));
            }
            first => {
                let mut word = String::from(first);
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || "|()".contains(next) {
                        break;
                    }
                    word.push(next);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

/// Go's truth: false, 0, nil, an empty string or collection are false.
fn truthy(value: &Yaml) -> bool {
    match value {
        Yaml::Null => false,
        Yaml::Bool(b) => *b,
        Yaml::Number(n) => n.as_f64() != Some(0.0),
        Yaml::String(s) => !s.is_empty(),
        Yaml::Sequence(s) => !s.is_empty(),
        Yaml::Mapping(m) => !m.is_empty(),
        Yaml::Tagged(_) => true,
    }
}

/// A value as a template prints it.
fn scalar(value: &Yaml) -> String {
    match value {
        Yaml::Null => String::new(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => n.to_string(),
        Yaml::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn printf(format: &str, args: &[Yaml]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s' | 'd' | 'v') => {
                let arg = args.next().ok_or("printf: too few arguments")?;
                out.push_str(&scalar(arg));
            }
            other => return Err(format!("printf: verb %{other:?} not handled")),
        }
    }
    Ok(out)
}

/// The render context Helm would build for `release` in `namespace`.
pub fn context(values: Yaml, chart: &Yaml, release: &str, namespace: &str) -> Yaml {
    let field = |key: &str| chart.get(key).cloned().unwrap_or(Yaml::Null);
    let mapping = |pairs: Vec<(&str, Yaml)>| {
        Yaml::Mapping(
            pairs
                .into_iter()
                .map(|(k, v)| (Yaml::String(k.to_string()), v))
                .collect(),
        )
    };
    mapping(vec![
        ("Values", values),
        (
            "Release",
            mapping(vec![
                ("Name", Yaml::String(release.to_string())),
                ("Namespace", Yaml::String(namespace.to_string())),
                ("Service", Yaml::String("Helm".to_string())),
            ]),
        ),
        (
            "Chart",
            mapping(vec![
                ("Name", field("name")),
                ("Version", field("version")),
                ("AppVersion", field("appVersion")),
            ]),
        ),
    ])
}

#[cfg(test)]
mod renderer_tests {
    use super::*;

    fn chart(helpers: &str) -> Chart {
        let values: Yaml = serde_yaml::from_str("name: ''\nlong: abcdef-\n").unwrap();
        let meta: Yaml = serde_yaml::from_str("name: demo\nversion: 1.0.0").unwrap();
        Chart::new(helpers, context(values, &meta, "rel", "ns")).unwrap()
    }

    #[test]
    fn renders_helm_semantics_for_the_name_functions() {
        let chart = chart(
            r#"{{/* a comment */}}
{{- define "pick" -}}
{{- if .Values.name }}
{{- .Values.name }}
{{- else if contains .Chart.Name .Release.Name }}
{{- .Release.Name }}
{{- else }}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 }}
{{- end }}
{{- end }}"#,
        );
        assert_eq!(
            chart.render("{{ include \"pick\" . }}").unwrap(),
            "rel-demo"
        );
        assert_eq!(
            chart
                .render("{{ .Values.long | trunc 7 | trimSuffix \"-\" }}")
                .unwrap(),
            "abcdef"
        );
        // trimSuffix removes one occurrence, like strings.TrimSuffix.
        assert_eq!(
            chart.render("{{ trimSuffix \"-\" \"a--\" }}").unwrap(),
            "a-"
        );
        assert_eq!(
            chart
                .render(
                    "x {{- default \"d\" .Values.name }} {{ (printf \"%s\" \"ab\" | trunc 1) }}"
                )
                .unwrap(),
            "xd a"
        );
    }

    #[test]
    fn refuses_what_it_cannot_render_instead_of_guessing() {
        let chart = chart("");
        for template in [
            "{{ upper .Release.Name }}",
            "{{ $namespace }}",
            "{{ range .Values.list }}x{{ end }}",
            "{{ include \"missing\" . }}",
            "{{ if .Values.name }}",
        ] {
            assert!(chart.render(template).is_err(), "{template}");
        }
    }
}
