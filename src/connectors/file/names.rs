//! Header names as written by people ("% residenti oltre 65 anni che vive sola", "Età") turned
//! into column names an analyst can type without quotes.

/// `Perc residenti oltre 80 anni` → `perc_residenti_oltre_80_anni`, `% stranieri 0 - 19 anni` →
/// `pct_stranieri_0_19_anni`, `Età` → `eta`, `AreaMQ` → `area_mq`, `IDZona` → `id_zona`. Empty
/// names become `column_<n>` (1-based).
pub fn snake_case(name: &str, position: usize) -> String {
    let mut out = String::with_capacity(name.len());
    let chars: Vec<char> = name.trim().chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        // A word starts at an upper-case letter after a lower-case one or a digit (`AreaMQ`), or
        // at the last capital of a run followed by a lower-case letter (`IDZona`).
        if c.is_uppercase() && i > 0 {
            let before = chars[i - 1];
            let after = chars.get(i + 1).copied();
            if before.is_lowercase()
                || before.is_ascii_digit()
                || (before.is_uppercase() && after.is_some_and(char::is_lowercase))
            {
                out.push('_');
            }
        }
        let mapped: &str = match c {
            '%' => "_pct_",
            'à' | 'á' | 'â' | 'ä' | 'À' | 'Á' => "a",
            'è' | 'é' | 'ê' | 'ë' | 'È' | 'É' => "e",
            'ì' | 'í' | 'î' | 'ï' | 'Ì' | 'Í' => "i",
            'ò' | 'ó' | 'ô' | 'ö' | 'Ò' | 'Ó' => "o",
            'ù' | 'ú' | 'û' | 'ü' | 'Ù' | 'Ú' => "u",
            c if c.is_ascii_alphanumeric() => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            _ => "_",
        };
        out.push_str(mapped);
    }
    let mut collapsed = String::with_capacity(out.len());
    for c in out.chars() {
        if c == '_' && (collapsed.is_empty() || collapsed.ends_with('_')) {
            continue;
        }
        collapsed.push(c);
    }
    let trimmed = collapsed.trim_end_matches('_').to_string();
    if trimmed.is_empty() {
        return format!("column_{position}");
    }
    // A name such as `1986` stays as it is (quote it in SQL): wide year columns are usually
    // unpivoted, and their names become values.
    trimmed
}

/// Make every name unique by suffixing `_2`, `_3`, … to later duplicates, so no column is lost.
pub fn deduplicate(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .map(|name| {
            if seen.insert(name.clone()) {
                return name;
            }
            let mut n = 2;
            loop {
                let candidate = format!("{name}_{n}");
                if seen.insert(candidate.clone()) {
                    return candidate;
                }
                n += 1;
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn italian_headers_become_identifiers() {
        assert_eq!(
            snake_case("Perc residenti oltre 80 anni", 1),
            "perc_residenti_oltre_80_anni"
        );
        assert_eq!(
            snake_case("% residenti oltre 65 anni che vive sola", 1),
            "pct_residenti_oltre_65_anni_che_vive_sola"
        );
        assert_eq!(
            snake_case("% stranieri 0 - 19 anni", 1),
            "pct_stranieri_0_19_anni"
        );
        assert_eq!(snake_case("Età", 1), "eta");
        assert_eq!(snake_case("AreaMQ", 1), "area_mq");
        assert_eq!(snake_case("IDZona", 1), "id_zona");
        assert_eq!(
            snake_case("CodiceAreaStatistica", 1),
            "codice_area_statistica"
        );
        assert_eq!(snake_case("POPOLAZIONE", 1), "popolazione");
        assert_eq!(snake_case("Nome_zona", 1), "nome_zona");
        assert_eq!(snake_case("Anno2021", 1), "anno2021");
        assert_eq!(snake_case("zona di prossimità", 1), "zona_di_prossimita");
        assert_eq!(snake_case("ATTIVITA'", 1), "attivita");
        assert_eq!(
            snake_case("Reddito imponibile mediano dei contribuenti \nresidenti", 1),
            "reddito_imponibile_mediano_dei_contribuenti_residenti"
        );
        assert_eq!(snake_case("  ", 4), "column_4");
        assert_eq!(snake_case("1986", 7), "1986");
    }

    #[test]
    fn duplicates_get_suffixes() {
        let names = deduplicate(vec!["a".into(), "b".into(), "a".into(), "a".into()]);
        assert_eq!(names, vec!["a", "b", "a_2", "a_3"]);
    }
}
