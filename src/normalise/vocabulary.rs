//! Words vendors send for states and statuses, compared the way an operator reads them: case,
//! spaces, `_`/`-` and Vietnamese diacritics do not matter (`Hiệu chuẩn` = `hieu_chuan` =
//! `HIEUCHUAN`).

use std::borrow::Cow;

use unicode_normalization::{UnicodeNormalization, char::is_combining_mark};

use crate::model::Status;

/// `text` as a comparison key: canonical decomposition (NFD) without its combining marks, `đ`
/// as `d` (it has no decomposition), lower case, without blanks, `_` and `-`. A key already
/// (`measuring`, every status of every message of most feeds) is not copied.
pub fn fold(text: &str) -> Cow<'_, str> {
    if text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(fold_owned(text))
}

fn fold_owned(text: &str) -> String {
    text.nfd()
        .filter(|c| !is_combining_mark(*c))
        .filter(|c| !c.is_whitespace() && !matches!(c, '_' | '-'))
        .map(|c| match c {
            'đ' | 'Đ' => 'd',
            other => other,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// Vendor status words, folded, to datalogger status: the convention of Thông tư 10/2021
/// (measuring / calibrating / fault) in English and Vietnamese, and the Smart Data Models'
/// Streetlight `status` enumeration (ok, defectiveLamp, columnIssue, brokenLantern).
const STATUSES: &[(&str, Status)] = &[
    ("measuring", Status::Measuring),
    ("ok", Status::Measuring),
    ("normal", Status::Measuring),
    ("on", Status::Measuring),
    ("off", Status::Measuring),
    ("active", Status::Measuring),
    ("online", Status::Measuring),
    ("good", Status::Measuring),
    ("dangdo", Status::Measuring),
    ("binhthuong", Status::Measuring),
    ("hoatdong", Status::Measuring),
    ("calibrating", Status::Calibrating),
    ("calibration", Status::Calibrating),
    ("maintenance", Status::Calibrating),
    ("hieuchuan", Status::Calibrating),
    ("baotri", Status::Calibrating),
    ("baoduong", Status::Calibrating),
    ("fault", Status::Fault),
    ("error", Status::Fault),
    ("failure", Status::Fault),
    ("broken", Status::Fault),
    ("offline", Status::Fault),
    ("defectivelamp", Status::Fault),
    ("columnissue", Status::Fault),
    ("brokenlantern", Status::Fault),
    ("loi", Status::Fault),
    ("hong", Status::Fault),
    ("suco", Status::Fault),
    ("matketnoi", Status::Fault),
];

/// Vendor status → datalogger status; no status is `measuring`. `None`: a word we do not
/// know (the message is rejected rather than guessed).
pub fn status(text: Option<&str>) -> Option<Status> {
    let Some(text) = text else {
        return Some(Status::Measuring);
    };
    let key = fold(text);
    if key.is_empty() {
        return Some(Status::Measuring);
    }
    STATUSES
        .iter()
        .find(|(word, _)| *word == key)
        .map(|(_, s)| *s)
}

/// The number an enumeration's `word` stands for, among `words` (already folded).
pub fn enumerated(words: &[(&str, f64)], word: &str) -> Option<f64> {
    let key = fold(word);
    words.iter().find(|(w, _)| *w == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diacritics_case_and_separators_do_not_matter() {
        assert_eq!(fold("Hiệu chuẩn"), "hieuchuan");
        assert_eq!(fold("HIEU_CHUAN"), "hieuchuan");
        assert_eq!(fold("Đang đo"), "dangdo");
        assert_eq!(fold("Lỗi"), "loi");
        assert_eq!(fold("brokenLantern"), "brokenlantern");
        // Precomposed and decomposed forms are the same word.
        assert_eq!(fold("Hie\u{0302}\u{0323}u"), fold("Hiệu"));
    }

    #[test]
    fn status_words_in_english_vietnamese_and_smart_data_models() {
        assert_eq!(status(Some("Hiệu chuẩn")), Some(Status::Calibrating));
        assert_eq!(status(Some("hieuchuan")), Some(Status::Calibrating));
        assert_eq!(status(Some("Lỗi")), Some(Status::Fault));
        assert_eq!(status(Some("Đang đo")), Some(Status::Measuring));
        assert_eq!(status(Some("brokenLantern")), Some(Status::Fault));
        assert_eq!(status(Some("defectiveLamp")), Some(Status::Fault));
        assert_eq!(status(Some("columnIssue")), Some(Status::Fault));
        assert_eq!(status(Some("ok")), Some(Status::Measuring));
        assert_eq!(status(None), Some(Status::Measuring));
        assert_eq!(status(Some("sleeping")), None);
    }

    #[test]
    fn every_word_is_stored_folded() {
        for (word, _) in STATUSES {
            assert_eq!(fold(word), *word);
        }
        for (word, _) in crate::normalise::catalog::POWER_STATES {
            assert_eq!(fold(word), *word);
        }
    }
}
