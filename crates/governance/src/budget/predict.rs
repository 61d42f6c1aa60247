//! WAL prediction: EWMA profiles per (scope, query id), a global profile per
//! query id, and class defaults, capped by the maximum prediction.

crate::sql_enum! {
    /// The statement classes the document names.
    pub enum StatementClass {
        Write = 1 => "write",
        ReadOnly = 2 => "read_only",
        Copy = 3 => "copy",
        Utility = 4 => "utility",
    }
}

/// The prediction strategy (`pwb.predictor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    ProfileEwma,
    StatementClassFallback,
}

/// A learned WAL profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub calls: u64,
    pub ewma_wal_bytes: f64,
    pub max_wal_bytes: u64,
}

impl Profile {
    /// The profile after its first observation.
    pub fn first(actual: u64) -> Profile {
        Profile {
            calls: 1,
            ewma_wal_bytes: actual as f64,
            max_wal_bytes: actual,
        }
    }

    /// Folds in one measurement with smoothing factor `alpha` in (0, 1].
    pub fn observe(&mut self, actual: u64, alpha: f64) {
        let alpha = if alpha.is_finite() {
            alpha.clamp(f64::MIN_POSITIVE, 1.0)
        } else {
            1.0
        };
        if self.calls == 0 {
            *self = Profile::first(actual);
            return;
        }
        self.ewma_wal_bytes = alpha * actual as f64 + (1.0 - alpha) * self.ewma_wal_bytes;
        self.max_wal_bytes = self.max_wal_bytes.max(actual);
        self.calls = self.calls.saturating_add(1);
    }

    /// The prediction this profile gives, rounded up.
    pub fn predicted_bytes(&self) -> u64 {
        let v = self.ewma_wal_bytes.ceil();
        if v.is_nan() || v <= 0.0 {
            0
        } else if v >= u64::MAX as f64 {
            u64::MAX
        } else {
            v as u64
        }
    }
}

/// Where a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PredictionSource {
    ScopeProfile,
    GlobalProfile,
    ClassDefault,
}

/// Class default sizes (`pwb.default_write_wal_bytes`,
/// `pwb.default_utility_wal_bytes`) and the cap (`pwb.max_prediction_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PredictionDefaults {
    pub write_bytes: u64,
    pub utility_bytes: u64,
    pub max_prediction_bytes: u64,
}

/// Predicts a statement's WAL: the scope profile, else the global profile for
/// the query id, else the class default; capped at the maximum. With the
/// `statement_class_fallback` predictor, profiles are ignored.
pub fn predict(
    predictor: Predictor,
    class: StatementClass,
    scope_profile: Option<&Profile>,
    global_profile: Option<&Profile>,
    defaults: PredictionDefaults,
) -> (u64, PredictionSource) {
    let (bytes, source) = match (predictor, scope_profile, global_profile) {
        (Predictor::ProfileEwma, Some(p), _) if p.calls > 0 => {
            (p.predicted_bytes(), PredictionSource::ScopeProfile)
        }
        (Predictor::ProfileEwma, _, Some(p)) if p.calls > 0 => {
            (p.predicted_bytes(), PredictionSource::GlobalProfile)
        }
        _ => {
            let default = match class {
                StatementClass::Write => defaults.write_bytes,
                StatementClass::Copy | StatementClass::Utility => defaults.utility_bytes,
                StatementClass::ReadOnly => 0,
            };
            (default, PredictionSource::ClassDefault)
        }
    };
    (bytes.min(defaults.max_prediction_bytes), source)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: PredictionDefaults = PredictionDefaults {
        write_bytes: 16 * 1024,
        utility_bytes: 1024 * 1024,
        max_prediction_bytes: 1 << 30,
    };

    #[test]
    fn ewma_moves_by_alpha() {
        let mut p = Profile::first(1000);
        p.observe(2000, 0.5);
        assert_eq!(p.predicted_bytes(), 1500);
        p.observe(2000, 0.25);
        assert_eq!(p.predicted_bytes(), 1625);
        assert_eq!((p.calls, p.max_wal_bytes), (3, 2000));
        p.observe(10, 1.0);
        assert_eq!(p.predicted_bytes(), 10);
        assert_eq!(p.max_wal_bytes, 2000);
    }

    #[test]
    fn lower_alpha_smooths_more() {
        let mut slow = Profile::first(0);
        let mut fast = Profile::first(0);
        slow.observe(1000, 0.1);
        fast.observe(1000, 0.9);
        assert!(slow.predicted_bytes() < fast.predicted_bytes());
    }

    #[test]
    fn fallback_chain() {
        let scope = Profile::first(100);
        let global = Profile::first(200);
        let p = Predictor::ProfileEwma;
        assert_eq!(
            predict(
                p,
                StatementClass::Write,
                Some(&scope),
                Some(&global),
                DEFAULTS
            ),
            (100, PredictionSource::ScopeProfile)
        );
        assert_eq!(
            predict(p, StatementClass::Write, None, Some(&global), DEFAULTS),
            (200, PredictionSource::GlobalProfile)
        );
        assert_eq!(
            predict(p, StatementClass::Write, None, None, DEFAULTS),
            (16 * 1024, PredictionSource::ClassDefault)
        );
        assert_eq!(
            predict(p, StatementClass::Copy, None, None, DEFAULTS).0,
            1024 * 1024
        );
        assert_eq!(
            predict(p, StatementClass::Utility, None, None, DEFAULTS).0,
            1024 * 1024
        );
    }

    #[test]
    fn class_fallback_predictor_ignores_profiles() {
        let scope = Profile::first(100);
        assert_eq!(
            predict(
                Predictor::StatementClassFallback,
                StatementClass::Write,
                Some(&scope),
                Some(&scope),
                DEFAULTS
            ),
            (16 * 1024, PredictionSource::ClassDefault)
        );
    }

    #[test]
    fn predictions_are_capped() {
        let huge = Profile::first(u64::MAX);
        let d = PredictionDefaults {
            max_prediction_bytes: 5000,
            ..DEFAULTS
        };
        assert_eq!(
            predict(
                Predictor::ProfileEwma,
                StatementClass::Write,
                Some(&huge),
                None,
                d
            )
            .0,
            5000
        );
        assert_eq!(
            predict(
                Predictor::ProfileEwma,
                StatementClass::Utility,
                None,
                None,
                d
            )
            .0,
            5000
        );
    }

    #[test]
    fn bad_alpha_does_not_poison_profile() {
        let mut p = Profile::first(100);
        p.observe(300, f64::NAN);
        assert_eq!(p.predicted_bytes(), 300);
    }
}
