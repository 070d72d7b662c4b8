//! Speeches of a play script such as tiny Shakespeare: a line `NAME:`
//! followed by the speech, up to the next blank line. The data of the
//! speaker-classification task.

/// One speech and who delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Speech {
    /// Who speaks, as the play names them.
    pub speaker: String,
    /// What they say.
    pub text: String,
}

/// Whether `line` is a speaker header: a name of letters, spaces,
/// apostrophes, dots or hyphens, then a colon, nothing else.
fn speaker_of(line: &str) -> Option<&str> {
    let name = line.strip_suffix(':')?;
    let first = name.chars().next()?;
    let valid = first.is_ascii_alphabetic()
        && name
            .chars()
            .all(|c| c.is_ascii_alphabetic() || " '.-".contains(c));
    valid.then_some(name)
}

/// Every speech in `text`: blocks separated by blank lines whose first line
/// is a `NAME:` header and which have at least one line of speech.
///
/// ```
/// use zeroformer::data::speeches::parse_speeches;
/// let s = parse_speeches("ROMEO:\nHe jests at scars.\n\nStage direction\n\nJULIET:\nAy me!\n");
/// assert_eq!(s.len(), 2);
/// assert_eq!((s[1].speaker.as_str(), s[1].text.as_str()), ("JULIET", "Ay me!"));
/// ```
pub fn parse_speeches(text: &str) -> Vec<Speech> {
    text.split("\n\n")
        .filter_map(|block| {
            let block = block.trim_matches('\n');
            let (header, body) = block.split_once('\n')?;
            let speaker = speaker_of(header)?;
            Some(Speech {
                speaker: speaker.to_string(),
                text: body.to_string(),
            })
        })
        .collect()
}

/// The `k` speakers with the most speeches, most first (ties by name).
pub fn top_speakers(speeches: &[Speech], k: usize) -> Vec<String> {
    let mut counts = std::collections::HashMap::<&str, usize>::new();
    for s in speeches {
        *counts.entry(&s.speaker).or_default() += 1;
    }
    let mut ranked: Vec<(&str, usize)> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    ranked
        .into_iter()
        .take(k)
        .map(|(name, _)| name.to_string())
        .collect()
}
