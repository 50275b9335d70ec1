//! Silences at admission: an incident a silence matches is recorded (it
//! was detected and planned) but suppressed instead of acting, with an
//! event naming the silence, so the audit trail shows what would have
//! happened. Checked when the incident would be admitted (at detection, or
//! when its hold ends), so a silence that ended meanwhile no longer applies.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{EventNote, Incident, IncidentError, Incidents, SYSTEM, State};
use crate::rules::silence::Silence;

impl Incidents {
    /// The silences file's silences from a (re)loaded rule set.
    pub fn set_file_silences(&self, silences: Arc<Vec<Silence>>) {
        *self
            .file_silences
            .write()
            .unwrap_or_else(|p| p.into_inner()) = silences;
    }

    /// The silence in force at `at` for this incident's group labels, from
    /// the file or the store.
    pub async fn silence_for(
        &self,
        inc: &Incident,
        at: DateTime<Utc>,
    ) -> Result<Option<Silence>, IncidentError> {
        let stored = self.store.silences_ending_after(at).await?;
        let file = Arc::clone(&self.file_silences.read().unwrap_or_else(|p| p.into_inner()));
        Ok(Silence::find(file.iter().chain(stored.iter()), &inc.group_labels, at).cloned())
    }

    /// Every silence not yet ended at `now` (in force or pending), the
    /// file's first.
    pub async fn current_silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Silence>, IncidentError> {
        let file = Arc::clone(&self.file_silences.read().unwrap_or_else(|p| p.into_inner()));
        let mut out: Vec<Silence> = file.iter().filter(|s| s.ends_at > now).cloned().collect();
        out.extend(self.store.silences_ending_after(now).await?);
        Ok(out)
    }

    /// Whether `id` names a silence of the file (which only a change to the
    /// file can end).
    pub fn is_file_silence(&self, id: &str) -> bool {
        self.file_silences
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|s| s.id == id)
    }

    /// Suppresses a planned incident if a silence matches it at `at`:
    /// `silenced` (who, why, until) then `suppressed`. `None` if none does.
    pub(super) async fn suppress_if_silenced(
        &self,
        planned: &Incident,
        at: DateTime<Utc>,
    ) -> Result<Option<Incident>, IncidentError> {
        let Some(s) = self.silence_for(planned, at).await? else {
            return Ok(None);
        };
        let until = s.ends_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        tracing::warn!(incident = %planned.id, silence = %s.id, "silenced until {until}; nothing acts");
        let data = json!({
            "silence": s.id,
            "matchers": s.matchers,
            "created_by": s.created_by,
            "comment": s.comment,
            "ends_at": s.ends_at,
            "source": s.source,
        });
        let note = EventNote::new(
            "silenced",
            SYSTEM,
            format!(
                "silence {} by {} until {until}: {}",
                s.id, s.created_by, s.comment
            ),
        )
        .with_data(data.clone());
        self.store.append_event(&planned.id, at, &note).await?;
        self.metrics
            .incidents_silenced
            .with_label_values(&[&planned.scenario])
            .inc();
        let note = EventNote::new(
            "suppressed",
            SYSTEM,
            format!("silenced by {} until {until}", s.id),
        )
        .with_data(data);
        Ok(Some(
            self.transition(planned, State::Suppressed, at, note)
                .await?,
        ))
    }
}
