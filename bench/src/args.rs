//! The command lines of the benchmark binaries: `--flag value` pairs, in order.

use std::str::FromStr;

use anyhow::Context;

/// The `--flag value` pairs of `args` (the program's arguments without its name). Every
/// benchmark binary takes its options so; a flag without a value is an error that names it.
pub fn pairs(args: impl IntoIterator<Item = String>) -> anyhow::Result<Vec<(String, String)>> {
    let mut args = args.into_iter();
    let mut pairs = Vec::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        pairs.push((flag, value));
    }
    Ok(pairs)
}

/// `value` parsed as the type of a flag; an error names the flag.
pub fn parse<T>(flag: &str, value: &str) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    value.parse().with_context(|| flag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn pairs_take_flags_and_values_in_order() {
        let got = pairs(strings(&["--a", "1", "--b", "x"])).unwrap();
        assert_eq!(
            got,
            vec![("--a".into(), "1".into()), ("--b".into(), "x".into())]
        );
    }

    #[test]
    fn a_flag_without_a_value_is_named() {
        let err = pairs(strings(&["--a", "1", "--b"])).unwrap_err();
        assert_eq!(err.to_string(), "--b needs a value");
    }

    #[test]
    fn a_bad_value_names_its_flag() {
        let err = parse::<usize>("--pods", "ten").unwrap_err();
        assert_eq!(err.to_string(), "--pods");
        assert_eq!(parse::<f64>("--rate", "50").unwrap(), 50.0);
    }
}
