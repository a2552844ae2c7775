//! Classic getopt, as djb's `sgetopt` does it: bundled flags (`-HRv`), an option's
//! argument attached or in the next word (`-c40`, `-c 40`), `--` ends the options, and
//! so does the first word that does not start with `-` (or is `-` alone).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// One parsed option.
#[derive(Debug, PartialEq, Eq)]
pub enum Opt {
    /// A flag, or an option with its argument.
    Ok(u8, Option<OsString>),
    /// A letter not in the option string: `illegal option -- Z`.
    Illegal(u8),
    /// An option that takes an argument, at the end of argv.
    MissingArg(u8),
}

impl Opt {
    /// getopt's complaint for a bad option, without the program name.
    pub fn complaint(&self) -> Option<String> {
        match self {
            Opt::Ok(..) => None,
            Opt::Illegal(c) => Some(format!("illegal option -- {}", *c as char)),
            Opt::MissingArg(c) => Some(format!("option requires an argument -- {}", *c as char)),
        }
    }
}

/// Iterates over the options of `args` (argv without argv[0]); afterwards
/// [`Getopt::rest`] is what follows them.
pub struct Getopt {
    args: Vec<OsString>,
    spec: &'static [u8],
    idx: usize,
    pos: usize,
}

impl Getopt {
    /// `spec` is getopt's option string: letters, each followed by `:` if it takes an argument.
    pub fn new(args: Vec<OsString>, spec: &'static str) -> Getopt {
        Getopt {
            args,
            spec: spec.as_bytes(),
            idx: 0,
            pos: 0,
        }
    }

    fn takes_arg(&self, c: u8) -> Option<bool> {
        let i = self.spec.iter().position(|&s| s == c && c != b':')?;
        Some(self.spec.get(i + 1) == Some(&b':'))
    }

    /// The words after the options.
    pub fn rest(self) -> Vec<OsString> {
        self.args.into_iter().skip(self.idx).collect()
    }
}

impl Iterator for Getopt {
    type Item = Opt;

    fn next(&mut self) -> Option<Opt> {
        if self.pos == 0 {
            let word = self.args.get(self.idx)?.as_bytes();
            if word == b"--" {
                self.idx += 1;
                return None;
            }
            if word.len() < 2 || word[0] != b'-' {
                return None;
            }
            self.pos = 1;
        }
        let word = self.args[self.idx].as_bytes().to_vec();
        let c = word[self.pos];
        self.pos += 1;
        let at_end = self.pos >= word.len();
        let opt = match self.takes_arg(c) {
            None => Opt::Illegal(c),
            Some(false) => Opt::Ok(c, None),
            Some(true) if !at_end => {
                let arg = OsString::from(std::ffi::OsStr::from_bytes(&word[self.pos..]));
                self.pos = word.len();
                Opt::Ok(c, Some(arg))
            }
            Some(true) => match self.args.get(self.idx + 1) {
                Some(a) => {
                    let a = a.clone();
                    self.idx += 1; // the argument's word is used up too
                    Opt::Ok(c, Some(a))
                }
                None => Opt::MissingArg(c),
            },
        };
        if self.pos >= word.len() {
            self.idx += 1;
            self.pos = 0;
        }
        Some(opt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str], spec: &'static str) -> (Vec<Opt>, Vec<OsString>) {
        let mut g = Getopt::new(words.iter().map(OsString::from).collect(), spec);
        let opts: Vec<Opt> = g.by_ref().collect();
        (opts, g.rest())
    }

    #[test]
    fn bundles_attached_and_separate_arguments() {
        let (o, rest) = parse(&["-HRv", "-c40", "-x", "r.cdb", "0", "smtp", "-v"], "vHRc:x:");
        assert_eq!(
            o,
            vec![
                Opt::Ok(b'H', None),
                Opt::Ok(b'R', None),
                Opt::Ok(b'v', None),
                Opt::Ok(b'c', Some("40".into())),
                Opt::Ok(b'x', Some("r.cdb".into())),
            ]
        );
        assert_eq!(rest, vec![OsString::from("0"), "smtp".into(), "-v".into()]);
    }

    #[test]
    fn double_dash_and_lone_dash_end_options() {
        let (o, rest) = parse(&["-v", "--", "-H"], "vH");
        assert_eq!(o, vec![Opt::Ok(b'v', None)]);
        assert_eq!(rest, vec![OsString::from("-H")]);
        let (o, rest) = parse(&["-", "x"], "v");
        assert!(o.is_empty());
        assert_eq!(rest.len(), 2);
    }

    #[test]
    fn bad_options_are_reported() {
        let (o, _) = parse(&["-Z"], "v");
        assert_eq!(o[0].complaint().unwrap(), "illegal option -- Z");
        let (o, _) = parse(&["-c"], "c:");
        assert_eq!(o[0].complaint().unwrap(), "option requires an argument -- c");
        let (o, _) = parse(&["-:"], "c:");
        assert_eq!(o[0], Opt::Illegal(b':'));
    }
}
