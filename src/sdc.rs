//! Statistical disclosure control for partners. A count of persons below the threshold k (but not
//! zero) is suppressed: the cell becomes NULL and a `<column>_suppressed` flag says so; the columns
//! a count could be recomputed from are suppressed with it. Secondary suppression: within a group
//! whose total is published, a lone suppressed cell could be recovered by subtraction, so the
//! smallest other cell of the group is suppressed as well.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array};
use arrow::compute::{cast, concat_batches, nullif};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::datasets::PersonCounts;

#[derive(Debug, thiserror::Error)]
pub enum SdcError {
    #[error("the dataset has no column `{0}` declared in persons")]
    MissingColumn(String),
    #[error("column `{0}` holds counts of persons but is not numeric")]
    NotNumeric(String),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
}

/// Suppress small cells of `batches` (one table) for a partner.
pub fn suppress(
    batches: &[RecordBatch],
    persons: &PersonCounts,
    min_count: u64,
) -> Result<RecordBatch, SdcError> {
    let schema = match batches.first() {
        Some(batch) => batch.schema(),
        None => return Ok(RecordBatch::new_empty(Arc::new(Schema::empty()))),
    };
    let batch = concat_batches(&schema, batches)?;
    let rows = batch.num_rows();
    let group_of = group_keys(&batch, &persons.groups)?;

    let mut masks: HashMap<String, Vec<bool>> = HashMap::new();
    for count in &persons.counts {
        let column = batch
            .column_by_name(count)
            .ok_or_else(|| SdcError::MissingColumn(count.clone()))?;
        if !column.data_type().is_numeric() {
            return Err(SdcError::NotNumeric(count.clone()));
        }
        let values = cast(column, &DataType::Float64)?;
        let values = values
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("cast to Float64");
        let small = |i: usize| {
            values.is_valid(i) && values.value(i) > 0.0 && values.value(i) < min_count as f64
        };
        let mut mask: Vec<bool> = (0..rows).map(small).collect();

        // Secondary suppression, group by group.
        let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
        for (row, key) in group_of.iter().enumerate() {
            groups.entry(key.as_str()).or_default().push(row);
        }
        for members in groups.values() {
            let suppressed = members.iter().filter(|r| mask[**r]).count();
            if suppressed != 1 || members.len() < 2 {
                continue;
            }
            let partner = members
                .iter()
                .filter(|r| !mask[**r] && values.is_valid(**r))
                .min_by(|a, b| values.value(**a).total_cmp(&values.value(**b)));
            if let Some(row) = partner {
                mask[*row] = true;
            }
        }
        masks.insert(count.clone(), mask);
    }

    // Which mask applies to each column: its own, or the one of the count it derives from.
    let mut applies: HashMap<String, Vec<bool>> = masks.clone();
    for (count, derived) in &persons.derived {
        for column in derived {
            if batch.column_by_name(column).is_none() {
                return Err(SdcError::MissingColumn(column.clone()));
            }
            let entry = applies
                .entry(column.clone())
                .or_insert_with(|| vec![false; rows]);
            for (slot, hidden) in entry.iter_mut().zip(&masks[count]) {
                *slot |= *hidden;
            }
        }
    }

    let mut fields: Vec<Field> = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        match applies.get(field.name()) {
            Some(mask) => {
                let mask = BooleanArray::from(mask.clone());
                fields.push(field.as_ref().clone().with_nullable(true));
                columns.push(nullif(column, &mask)?);
            }
            None => {
                fields.push(field.as_ref().clone());
                columns.push(column.clone());
            }
        }
    }
    // The flag says whether the count is hidden, for its own size or with another count it derives from.
    for count in &persons.counts {
        fields.push(Field::new(
            format!("{count}_suppressed"),
            DataType::Boolean,
            false,
        ));
        columns.push(Arc::new(BooleanArray::from(applies[count].clone())));
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Each row's group, as the text of its group columns (one group when there are none).
fn group_keys(batch: &RecordBatch, groups: &[String]) -> Result<Vec<String>, SdcError> {
    let options = FormatOptions::default().with_null("∅");
    let formatters = groups
        .iter()
        .map(|name| {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| SdcError::MissingColumn(name.clone()))?;
            Ok(ArrayFormatter::try_new(column.as_ref(), &options)?)
        })
        .collect::<Result<Vec<_>, SdcError>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            formatters
                .iter()
                .map(|f| f.value(row).to_string())
                .collect::<Vec<_>>()
                .join("\u{1f}")
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("zona", DataType::Utf8, false),
            Field::new("area", DataType::Utf8, false),
            Field::new("residenti", DataType::Int64, false),
            Field::new("quota", DataType::Float64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["A", "A", "A", "B", "B", "C"])),
                Arc::new(StringArray::from(vec!["a1", "a2", "a3", "b1", "b2", "c1"])),
                Arc::new(Int64Array::from(vec![4, 120, 35, 50, 60, 0])),
                Arc::new(Float64Array::from(vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn small_cells_and_their_recovering_partner_are_suppressed() {
        let persons = PersonCounts {
            counts: vec!["residenti".into()],
            derived: [("residenti".to_string(), vec!["quota".to_string()])].into(),
            groups: vec!["zona".into()],
        };
        let out = suppress(&[batch()], &persons, 10).unwrap();
        let residenti = out
            .column_by_name("residenti")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let values: Vec<Option<i64>> = residenti.iter().collect();
        // a1 (4) is small; a3 (35), the smallest other cell of zone A, goes too; zero is published.
        assert_eq!(
            values,
            vec![None, Some(120), None, Some(50), Some(60), Some(0)]
        );
        let flags = out
            .column_by_name("residenti_suppressed")
            .unwrap()
            .as_any()
            .downcast_ref::<BooleanArray>()
            .unwrap();
        assert_eq!(
            flags.iter().flatten().collect::<Vec<_>>(),
            vec![true, false, true, false, false, false]
        );
        let quota = out.column_by_name("quota").unwrap();
        assert!(quota.is_null(0) && quota.is_null(2) && quota.is_valid(1));
    }
}
