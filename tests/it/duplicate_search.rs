//! Duplicate search when a word of the sought name is mistyped: only the pair of the
//! other two words is left as a block, and in a large register hundreds of children
//! share it, tied on place and birth year. The child meant must still come out first.

use crate::helpers::*;
use himaya_record::matching::MatchKey;
use himaya_record::CaseRecord;

/// Father's names unlike "أحمد": three letters drawn from consonants it does not use.
fn other_father(i: usize) -> String {
    const LETTERS: [char; 12] = ['ب', 'ت', 'ث', 'ج', 'خ', 'ذ', 'ر', 'ز', 'س', 'ش', 'ص', 'ط'];
    [i / 144, (i / 12) % 12, i % 12]
        .iter()
        .map(|&n| LETTERS[n % 12])
        .collect()
}

fn child(name: &str) -> CaseRecord {
    let mut case = himaya_record::fixtures::record();
    case.case_id = himaya_record::CaseId::new();
    case.child.name.as_given = name.into();
    case.child.name.transliteration = None;
    case
}

#[tokio::test]
async fn a_mistyped_word_still_finds_the_child_among_hundreds_sharing_the_other_two() {
    let env = TestEnv::new(None).await;
    let pool = env.cases_schema().await;
    // 150 children "مريم <father> النجار", same place and birth date as the one sought,
    // then the one sought, stored last.
    let mut cases: Vec<CaseRecord> = (0..150)
        .map(|i| child(&format!("مريم {} النجار", other_father(i))))
        .collect();
    let sought = child("مريم أحمد النجار");
    cases.push(sought.clone());
    let mut conn = pool.acquire().await.unwrap();
    himaya_cases::duplicates::index_children(&mut conn, cases.iter())
        .await
        .unwrap();
    drop(conn);
    himaya_cases::duplicates::tidy(&pool).await;

    // The father's name with its last letter mistyped: of the name's three blocks only
    // "مريم + النجار" is shared, by all 151 children, tied on it.
    let mut probe = child("مريم أحمب النجار");
    probe.created_at = sought.created_at;
    assert_eq!(
        best(&pool, &probe).await,
        Some(sought.case_id.to_string()),
        "the child sought comes first"
    );

    // Spelt right, it shares all three blocks and comes first too.
    assert_eq!(best(&pool, &sought).await, Some(sought.case_id.to_string()));
}

/// The case id of the best candidate for `case`'s child, if any.
async fn best(pool: &sqlx::PgPool, case: &CaseRecord) -> Option<String> {
    let key = MatchKey::of(&case.child, case.created_at.date_naive());
    let hits = himaya_cases::duplicates::candidates(pool, &key, None, 0.6, 10)
        .await
        .unwrap();
    hits.into_iter().next().map(|h| h.0)
}
