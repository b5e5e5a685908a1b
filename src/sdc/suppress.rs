//! Suppression of one result. Primary: a count of persons below the threshold k (but not zero)
//! becomes NULL and a `<column>_suppressed` flag says so. Derived: the columns a count could be
//! recomputed from are suppressed with it. Secondary: within a group whose total is published, a
//! lone suppressed cell could be recovered by subtraction, so the smallest other cell of the
//! group is suppressed as well. A suppressed cell is overwritten, not only masked: the value
//! buffers under a NULL hold zeros, so no binary format (Arrow IPC, Parquet) carries it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, MutableArrayData, make_array};
use arrow::compute::{cast, concat_batches};
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
                fields.push(field.as_ref().clone().with_nullable(true));
                columns.push(overwrite(column, mask)?);
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

/// `column` with the rows in `hidden` replaced by NULL, written afresh: the value buffers hold zeros
/// at those rows (`MutableArrayData` writes zeroed slots for nulls), not the values they had.
pub fn overwrite(column: &ArrayRef, hidden: &[bool]) -> Result<ArrayRef, SdcError> {
    let data = column.to_data();
    let mut out = MutableArrayData::new(vec![&data], true, data.len());
    let mut row = 0;
    while row < hidden.len() {
        let start = row;
        let hide = hidden[row];
        while row < hidden.len() && hidden[row] == hide {
            row += 1;
        }
        if hide {
            out.try_extend_nulls(row - start)?;
        } else {
            out.try_extend(0, start, row)?;
        }
    }
    Ok(make_array(out.freeze()))
}

/// Every column of `batch` rewritten so that nothing lies under a NULL: what is published holds
/// zeros there, whatever the computation that produced the NULL left in the buffers.
pub fn scrub_nulls(batch: &RecordBatch) -> Result<RecordBatch, SdcError> {
    let columns = batch
        .columns()
        .iter()
        .map(|column| {
            if column.null_count() == 0 {
                return Ok(column.clone());
            }
            let hidden: Vec<bool> = (0..column.len()).map(|i| column.is_null(i)).collect();
            overwrite(column, &hidden)
        })
        .collect::<Result<Vec<ArrayRef>, SdcError>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Inherited suppression: a count that is NULL in `published` because it was computed from a
/// suppressed cell upstream, while the raw result (`raw`, the same query over unsuppressed
/// inputs) has a value in the row with the same `key`, gets its `<count>_suppressed` flag set, so
/// a reader can tell it from a count that is missing in the source.
pub fn inherit_flags(
    published: &RecordBatch,
    raw: &[RecordBatch],
    key: &[String],
    counts: &[String],
) -> Result<RecordBatch, SdcError> {
    if key.is_empty() || raw.is_empty() {
        return Ok(published.clone());
    }
    let raw = concat_batches(&raw[0].schema(), raw)?;
    let raw_keys = group_keys(&raw, key)?;
    let published_keys = group_keys(published, key)?;
    let raw_row: HashMap<&str, usize> = raw_keys
        .iter()
        .enumerate()
        .map(|(row, k)| (k.as_str(), row))
        .collect();
    let schema = published.schema();
    let mut columns: Vec<ArrayRef> = published.columns().to_vec();
    for count in counts {
        let (Ok(value_index), Ok(flag_index), Some(raw_values)) = (
            schema.index_of(count),
            schema.index_of(&format!("{count}_suppressed")),
            raw.column_by_name(count),
        ) else {
            continue;
        };
        let values = published.column(value_index);
        let flags = columns[flag_index]
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("flags are Boolean")
            .clone();
        let inherited: Vec<bool> = (0..published.num_rows())
            .map(|row| {
                flags.value(row)
                    || (values.is_null(row)
                        && raw_row
                            .get(published_keys[row].as_str())
                            .is_some_and(|r| raw_values.is_valid(*r)))
            })
            .collect();
        columns[flag_index] = Arc::new(BooleanArray::from(inherited));
    }
    Ok(RecordBatch::try_new(schema, columns)?)
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
        // Not only masked: the value buffers hold zeros where the cells were suppressed.
        assert_eq!(&residenti.values()[..3], &[0, 120, 0]);
        let quota = quota.as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(&quota.values()[..3], &[0.0, 0.2, 0.0]);
    }

    #[test]
    fn nothing_is_left_under_a_null() {
        let text = Arc::new(StringArray::from(vec![Some("segreto"), None, Some("x")]));
        let numbers = Arc::new(Int64Array::from(vec![7, 8, 9]));
        let hidden_text = overwrite(&(text as ArrayRef), &[true, true, false]).unwrap();
        let hidden_numbers = overwrite(&(numbers as ArrayRef), &[false, true, true]).unwrap();
        let text = hidden_text.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(text.value_offsets(), &[0, 0, 0, 1]);
        assert_eq!(text.values().as_slice(), b"x");
        let numbers = hidden_numbers
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(numbers.values().as_ref(), &[7, 0, 0]);
        assert_eq!(numbers.null_count(), 2);
    }
}
