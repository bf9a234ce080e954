//! Text for people: status messages, Events and errors must stay one line
//! and bounded, whatever a server or a user wrote.

/// Cuts `s` to at most `max` bytes (on a character boundary), marking the
/// cut with `...`.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// Joins the non-empty lines of `s` with single spaces.
pub fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_short_text_and_cuts_on_a_char_boundary() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abcdefghij", 6), "abc...");
        assert_eq!(truncate("ééééé", 6), "é...");
    }

    #[test]
    fn one_line_joins_non_empty_lines() {
        assert_eq!(one_line(" a\n\n b \nc"), "a b c");
    }
}
