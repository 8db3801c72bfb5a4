//! `mmmu_multi_image`: real multi-image requests from the MMMU validation set, as evalscope
//! builds them. MMMU keeps one folder per subject (`Accounting/validation-00000-of-00001.parquet`,
//! ... 30 subjects); rows have `question`, `options` (a list written as text) and up to seven
//! images `image_1` ... `image_7` (`{"bytes", "path"}` structs). Only rows with at least two
//! images become requests, taken round-robin over the subjects (one row of each subject in turn,
//! the eligible ones yielded), so any `--number` mixes every subject.
//!
//! The prompt is the question, then `"\nOptions: <options>"` when there are any; each `<image N>`
//! (or `<image_N>`) placeholder becomes that image, in place, between the text around it; a
//! question without placeholders gets its text then all its images. Images go as their own
//! bytes in a data URL of their own type (evalscope re-encodes each as JPEG with PIL: perf sends
//! the dataset's bytes, without a lossy re-encode on the client's CPU).
//!
//! `--dataset-path` is a directory in the hub's layout (a folder per subject), a directory of
//! parquet files, or one parquet file; without it the files come from the hub
//! (`AI-ModelScope/MMMU`, `MMMU/MMMU` on Hugging Face) and then the cache.

use std::path::{Path, PathBuf};

use parquet::record::Row;
use perf_plugin_api::sdk::{DatasetConfig, DatasetSourcePlugin};
use perf_plugin_api::{
    ChatMessage, ContentPart, DatasetItem, PluginError, PromptItem, TokenizerRef,
};

use crate::tables::{self, Table};

const HUB_MODELSCOPE: &str = "AI-ModelScope/MMMU";
const HUB_HUGGINGFACE: &str = "MMMU/MMMU";
const SPLIT: &str = "validation";
const HINT: &str =
    "a directory with a folder of validation parquet files per MMMU subject, or one parquet file";
const MIN_IMAGES: usize = 2;
const MAX_IMAGES: usize = 7;

/// MMMU's subjects, in evalscope's order.
pub(crate) const SUBJECTS: [&str; 30] = [
    "Accounting",
    "Agriculture",
    "Architecture_and_Engineering",
    "Art",
    "Art_Theory",
    "Basic_Medical_Science",
    "Biology",
    "Chemistry",
    "Clinical_Medicine",
    "Computer_Science",
    "Design",
    "Diagnostics_and_Laboratory_Medicine",
    "Economics",
    "Electronics",
    "Energy_and_Power",
    "Finance",
    "Geography",
    "History",
    "Literature",
    "Manage",
    "Marketing",
    "Materials",
    "Math",
    "Mechanical_Engineering",
    "Music",
    "Pharmacy",
    "Physics",
    "Psychology",
    "Public_Health",
    "Sociology",
];

/// One subject: its files, read one after another.
struct Subject {
    files: std::vec::IntoIter<PathBuf>,
    table: Option<Table>,
}

impl Subject {
    fn next_row(&mut self) -> Result<Option<Row>, PluginError> {
        loop {
            if let Some(table) = &mut self.table {
                if let Some(row) = table.next_row()? {
                    return Ok(Some(row));
                }
            }
            match self.files.next() {
                Some(path) => self.table = Some(Table::open(&path)?),
                None => return Ok(None),
            }
        }
    }
}

/// `mmmu_multi_image`.
pub struct MmmuMultiImage {
    /// The subjects with rows left, in round-robin order.
    subjects: Vec<Subject>,
    /// The next subject to read from.
    at: usize,
    yielded: u64,
}

fn hub_subjects(config: &DatasetConfig) -> Result<Vec<Vec<PathBuf>>, PluginError> {
    let id = MmmuMultiImage::ID;
    let (hub, source) = tables::hub_for(config, id, HINT)?;
    let repo = match source {
        perf_hub::Source::ModelScope => HUB_MODELSCOPE,
        perf_hub::Source::HuggingFace => HUB_HUGGINGFACE,
    };
    SUBJECTS
        .iter()
        .map(|subject| tables::hub_split(&hub, repo, subject, SPLIT, &[".parquet"], id, HINT))
        .collect()
}

fn local_subjects(path: &Path) -> Result<Vec<Vec<PathBuf>>, PluginError> {
    if path.is_dir() && SUBJECTS.iter().any(|s| path.join(s).is_dir()) {
        let mut subjects = Vec::new();
        for subject in SUBJECTS {
            let dir = path.join(subject);
            if !dir.is_dir() {
                continue;
            }
            let files = tables::local_parquet(&dir, "")?;
            let split: Vec<PathBuf> = files
                .iter()
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(SPLIT))
                })
                .cloned()
                .collect();
            subjects.push(if split.is_empty() { files } else { split });
        }
        return Ok(subjects);
    }
    let files = tables::local_parquet(path, "")?;
    if files.is_empty() {
        return Err(PluginError::config(format!(
            "--dataset-path {}: no parquet files there (mmmu_multi_image reads {HINT})",
            path.display()
        )));
    }
    Ok(files.into_iter().map(|f| vec![f]).collect())
}

/// The MIME type of an image's bytes, from its signature.
fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if bytes.starts_with(b"GIF8") {
        "image/gif"
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if bytes.starts_with(b"BM") {
        "image/bmp"
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        "image/tiff"
    } else {
        "application/octet-stream"
    }
}

fn data_url(bytes: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:{};base64,{}",
        sniff(bytes),
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// The question, then its options when it has any.
fn prompt_text(row: &Row) -> Option<String> {
    let question = tables::text(row, "question")?;
    match tables::text(row, "options") {
        Some(options) if !options.is_empty() && options != "[]" => {
            Some(format!("{question}\nOptions: {options}"))
        }
        _ => Some(question),
    }
}

/// The `<image N>` / `<image_N>` placeholders of `text`: (start, end, N).
fn placeholders(text: &str) -> Vec<(usize, usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("<image") {
        let start = from + at;
        let rest = &text[start + "<image".len()..];
        let digits_at = match rest.chars().next() {
            Some('_') | Some(' ') => 1,
            _ => {
                from = start + 1;
                continue;
            }
        };
        let digits: String = rest[digits_at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let close = digits_at + digits.len();
        if digits.is_empty() || !rest[close..].starts_with('>') {
            from = start + 1;
            continue;
        }
        let end = start + "<image".len() + close + 1;
        found.push((start, end, digits.parse().unwrap_or(usize::MAX)));
        from = end;
    }
    found
}

/// The user message of one row: text and images in the placeholders' order.
fn message(text: &str, images: &[(usize, String)]) -> ChatMessage {
    let all = || {
        std::iter::once(ContentPart::Text(text.into())).chain(
            images
                .iter()
                .map(|(_, url)| ContentPart::ImageUrl(url.as_str().into())),
        )
    };
    let marks = placeholders(text);
    if marks.is_empty() {
        return ChatMessage::new("user", all());
    }
    let mut parts = Vec::new();
    let mut last = 0;
    for (start, end, n) in marks {
        let segment = &text[last..start];
        if !segment.trim().is_empty() {
            parts.push(ContentPart::Text(segment.into()));
        }
        if let Some((_, url)) = images.iter().find(|(i, _)| *i == n) {
            parts.push(ContentPart::ImageUrl(url.as_str().into()));
        }
        last = end;
    }
    let tail = &text[last..];
    if !tail.trim().is_empty() {
        parts.push(ContentPart::Text(tail.into()));
    }
    if parts.is_empty() {
        return ChatMessage::new("user", all());
    }
    ChatMessage::new("user", parts)
}

/// The request of one row, or `None` when it has fewer than two images or no question.
fn row_item(row: &Row) -> Option<DatasetItem> {
    let images: Vec<(usize, String)> = (1..=MAX_IMAGES)
        .filter_map(|i| {
            let cell = tables::column(row, &format!("image_{i}"))?;
            tables::bytes(cell).map(|b| (i, data_url(b)))
        })
        .collect();
    if images.len() < MIN_IMAGES {
        return None;
    }
    let text = prompt_text(row)?;
    let message = message(&text, &images);
    Some(DatasetItem::new(PromptItem::Messages(vec![message].into())))
}

impl DatasetSourcePlugin for MmmuMultiImage {
    const ID: &'static str = "mmmu_multi_image";
    const DESCRIPTION: &'static str =
        "multi-image questions from the MMMU validation set, round-robin over its 30 subjects (hub, or --dataset-path)";
    const OPTION_KEYS: Option<&'static [&'static str]> = Some(&[]);

    fn new(config: &DatasetConfig, _tokenizer: Option<TokenizerRef>) -> Result<Self, PluginError> {
        if config.tokenize_prompt {
            return Err(PluginError::config(
                "--tokenize-prompt does not work with the mmmu_multi_image dataset: its messages carry images, which a list of token ids cannot hold; drop --tokenize-prompt",
            ));
        }
        let files = match &config.dataset_path {
            Some(p) => local_subjects(Path::new(p))?,
            None => hub_subjects(config)?,
        };
        let subjects = files
            .into_iter()
            .map(|f| Subject {
                files: f.into_iter(),
                table: None,
            })
            .collect();
        Ok(MmmuMultiImage {
            subjects,
            at: 0,
            yielded: 0,
        })
    }

    fn next_item(&mut self) -> Result<Option<DatasetItem>, PluginError> {
        while !self.subjects.is_empty() {
            if self.at >= self.subjects.len() {
                self.at = 0;
            }
            match self.subjects[self.at].next_row()? {
                None => {
                    // This subject is done; the next one moves into its place.
                    self.subjects.remove(self.at);
                }
                Some(row) => {
                    self.at += 1;
                    if let Some(item) = row_item(&row) {
                        self.yielded += 1;
                        return Ok(Some(item));
                    }
                }
            }
        }
        if self.yielded == 0 {
            return Err(PluginError::invalid(format!(
                "the MMMU files hold no question with {MIN_IMAGES} or more images (image_1 ... image_{MAX_IMAGES})"
            )));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_with_a_space_or_an_underscore() {
        let text = "Compare <image 1> and <image_2>; not <image> or <image 3 or <imagex4>.";
        let found: Vec<usize> = placeholders(text).iter().map(|p| p.2).collect();
        assert_eq!(found, [1, 2]);
        let (start, end, _) = placeholders(text)[1];
        assert_eq!(&text[start..end], "<image_2>");
    }

    #[test]
    fn images_take_their_placeholders_places() {
        let images = vec![(1, "data:a".to_string()), (2, "data:b".to_string())];
        let m = message("First <image 2> then <image 1>.", &images);
        let parts: Vec<String> = m
            .content
            .iter()
            .map(|p| match p.as_enum() {
                Ok(ContentPart::Text(t)) => format!("T:{t}"),
                Ok(ContentPart::ImageUrl(u)) => format!("I:{u}"),
                _ => "?".into(),
            })
            .collect();
        assert_eq!(
            parts,
            ["T:First ", "I:data:b", "T: then ", "I:data:a", "T:."]
        );
        // No placeholder: the text, then every image.
        let m = message("Which is larger?", &images);
        assert_eq!(m.content.len(), 3);
    }

    #[test]
    fn image_types_come_from_their_signatures() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff(&[0xff, 0xd8, 0xff, 0xe0]), "image/jpeg");
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff(b"????"), "application/octet-stream");
    }
}
