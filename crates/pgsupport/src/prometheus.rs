//! The Prometheus text exposition format (version 0.0.4), which every
//! extension's `metrics()` function returns: one `# HELP` and one `# TYPE`
//! line per metric family, then its samples, label values escaped.
use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// The text being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Starts a metric family: its help text and type. Counter names end in
    /// `_total` by convention; the caller names them.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Exposition {
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample of the current family, with `labels` (name, value).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Exposition {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// One sample of the current family with a label set rendered once
    /// for many series ([`LabelSet`]), followed by `extra` labels.
    pub fn sample_with(
        &mut self,
        name: &str,
        set: &LabelSet,
        extra: &[(&str, &str)],
        value: f64,
    ) -> &mut Exposition {
        self.out.push_str(name);
        self.out.push('{');
        self.out.push_str(&set.0);
        for (i, (label, v)) in extra.iter().enumerate() {
            if i > 0 || !set.0.is_empty() {
                self.out.push(',');
            }
            let _ = write!(self.out, "{label}=\"{}\"", escape_label(v));
        }
        self.out.push('}');
        let _ = writeln!(self.out, " {}", format_value(value));
        self
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Exposition {
        self.family(name, kind, help).sample(name, &[], value)
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// Labels rendered once (`a="x",b="y"`, values escaped), for the many
/// series that share them.
#[derive(Debug, Clone, Default)]
pub struct LabelSet(String);

impl LabelSet {
    pub fn new(labels: &[(&str, &str)]) -> LabelSet {
        let mut out = String::new();
        for (i, (label, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{label}=\"{}\"", escape_label(v));
        }
        LabelSet(out)
    }
}

/// A label value: backslash, double quote and newline escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and newline escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else {
        format!("{value}")
    }
}
