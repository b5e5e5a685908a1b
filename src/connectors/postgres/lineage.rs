//! Column lineage of a registry query, from its syntax tree: for every output column, the base
//! columns it is computed from. A column named `chiave` that is `lower(codice_fiscale)` is still the
//! fiscal code, and a column named `codice_fiscale` that is a count is not: the check looks at what
//! the query does, not at the names it chooses.
//!
//! Identifiers are resolved scope by scope: through derived tables, CTEs (with their column
//! lists), joins, set operations, `*` and `t.*`, whole-row references (`to_jsonb(r)`) and scalar
//! subqueries. The columns of base tables come from the database (`columns_of`). Counting an
//! identifying column (`count(DISTINCT codice_fiscale)`) and reducing a date to its year or a
//! coarser unit (`extract(year FROM data_nascita)`) do not carry identity; anything else over one
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName,
    ObjectNamePart, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement,
    TableAlias, TableFactor, Value, visit_expressions, visit_expressions_mut, visit_relations,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// An identifying base column: the relation as the query names it, and the column.
pub type Origin = (String, String);

/// One output column of the query and the identifying base columns it is computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputLineage {
    pub name: String,
    pub identifying: BTreeSet<Origin>,
}

/// The statement as one query, or why it cannot be analysed.
pub fn parse(query: &str) -> Result<Query, String> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, query).map_err(|e| e.to_string())?;
    match <[Statement; 1]>::try_from(statements) {
        Ok([Statement::Query(query)]) => Ok(*query),
        _ => Err("expected exactly one SELECT statement".into()),
    }
}

/// The relations the query names (tables, views, and CTE names too): what `columns_of` will be
/// asked about.
pub fn relations(query: &Query) -> Vec<String> {
    let mut names = BTreeSet::new();
    let _ = visit_relations(query, |name: &ObjectName| {
        names.insert(name.to_string());
        ControlFlow::<()>::Continue(())
    });
    names.into_iter().collect()
}

/// The lineage of every output column. `columns_of` gives a base relation's columns (by the name
/// the query uses), `None` when it is not known; `identifying` tells an identifying column's name.
pub fn lineage(
    query: &Query,
    columns_of: &dyn Fn(&str) -> Option<Vec<String>>,
    identifying: &dyn Fn(&str) -> bool,
) -> Vec<OutputLineage> {
    let analysis = Analysis {
        columns_of,
        identifying,
    };
    analysis
        .query(query, &Ctes::new(), &[])
        .into_iter()
        .map(|c| OutputLineage {
            name: c.name,
            identifying: c.sources,
        })
        .collect()
}

type Sources = BTreeSet<Origin>;
type Ctes = BTreeMap<String, Vec<Column>>;

#[derive(Debug, Clone)]
struct Column {
    name: String,
    sources: Sources,
}

/// Something in a FROM clause, as the rest of the SELECT sees it.
#[derive(Debug, Clone)]
struct Item {
    /// The alias, or the relation's last name part.
    qualifier: String,
    /// `None` for a base relation whose columns are not known.
    columns: Option<Vec<Column>>,
    /// The relation's name, for a base relation.
    relation: Option<String>,
}

struct Analysis<'a> {
    columns_of: &'a dyn Fn(&str) -> Option<Vec<String>>,
    identifying: &'a dyn Fn(&str) -> bool,
}

/// How PostgreSQL folds a name: unquoted identifiers are lowercase.
fn folded(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    match name.0.last()? {
        ObjectNamePart::Identifier(ident) => Some(folded(ident)),
        ObjectNamePart::Function(_) => None,
    }
}

fn renamed(mut columns: Vec<Column>, alias: Option<&TableAlias>) -> Vec<Column> {
    if let Some(alias) = alias {
        for (column, name) in columns.iter_mut().zip(&alias.columns) {
            column.name = folded(&name.name);
        }
    }
    columns
}

impl Analysis<'_> {
    fn query(&self, query: &Query, ctes: &Ctes, outer: &[&[Item]]) -> Vec<Column> {
        let mut ctes = ctes.clone();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let columns = renamed(self.query(&cte.query, &ctes, outer), Some(&cte.alias));
                ctes.insert(folded(&cte.alias.name), columns);
            }
        }
        self.set_expr(&query.body, &ctes, outer)
    }

    fn set_expr(&self, body: &SetExpr, ctes: &Ctes, outer: &[&[Item]]) -> Vec<Column> {
        match body {
            SetExpr::Select(select) => self.select(select, ctes, outer),
            SetExpr::Query(query) => self.query(query, ctes, outer),
            SetExpr::SetOperation { left, right, .. } => {
                let mut columns = self.set_expr(left, ctes, outer);
                for (column, other) in columns.iter_mut().zip(self.set_expr(right, ctes, outer)) {
                    column.sources.extend(other.sources);
                }
                columns
            }
            SetExpr::Values(values) => values
                .rows
                .first()
                .map(|row| {
                    (0..row.len())
                        .map(|i| {
                            let mut sources = Sources::new();
                            for row in &values.rows {
                                if let Some(expr) = row.get(i) {
                                    sources.extend(self.expr(expr, &[], ctes, outer));
                                }
                            }
                            Column {
                                name: format!("column{}", i + 1),
                                sources,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default(),
            SetExpr::Table(table) => {
                let name = match (&table.schema_name, &table.table_name) {
                    (Some(schema), Some(table)) => format!("{schema}.{table}"),
                    (None, Some(table)) => table.clone(),
                    _ => return Vec::new(),
                };
                let item = self.base(&name, table.table_name.clone().unwrap_or_default(), None);
                self.all_columns(&item)
            }
            _ => Vec::new(),
        }
    }

    fn select(&self, select: &Select, ctes: &Ctes, outer: &[&[Item]]) -> Vec<Column> {
        let mut items: Vec<Item> = Vec::new();
        for from in &select.from {
            let factors =
                std::iter::once(&from.relation).chain(from.joins.iter().map(|j| &j.relation));
            for factor in factors {
                // LATERAL subqueries see the items before them.
                let mut scopes: Vec<&[Item]> = outer.to_vec();
                let before = items.clone();
                scopes.push(&before);
                items.extend(self.factor(factor, ctes, &scopes));
            }
        }
        let mut columns = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::UnnamedExpr(expr) => columns.push(Column {
                    name: output_name(expr),
                    sources: self.expr(expr, &items, ctes, outer),
                }),
                SelectItem::ExprWithAlias { expr, alias } => columns.push(Column {
                    name: folded(alias),
                    sources: self.expr(expr, &items, ctes, outer),
                }),
                SelectItem::ExprWithAliases { expr, aliases } => {
                    let sources = self.expr(expr, &items, ctes, outer);
                    columns.extend(aliases.iter().map(|alias| Column {
                        name: folded(alias),
                        sources: sources.clone(),
                    }));
                }
                SelectItem::Wildcard(_) => {
                    for item in &items {
                        columns.extend(self.all_columns(item));
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        let qualifier = last_part(name).unwrap_or_default();
                        if let Some(item) = items.iter().find(|i| i.qualifier == qualifier) {
                            columns.extend(self.all_columns(item));
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => columns.push(Column {
                        name: "?column?".into(),
                        sources: self.expr(expr, &items, ctes, outer),
                    }),
                },
            }
        }
        columns
    }

    fn factor(&self, factor: &TableFactor, ctes: &Ctes, outer: &[&[Item]]) -> Vec<Item> {
        match factor {
            // `FROM generate_series(1, 10) AS i`: a function, not a relation.
            TableFactor::Table {
                alias,
                args: Some(_),
                ..
            } => vec![function_item(alias.as_ref())],
            TableFactor::Table { name, alias, .. } => {
                let last = last_part(name).unwrap_or_default();
                let qualifier = alias.as_ref().map_or(last.clone(), |a| folded(&a.name));
                if name.0.len() == 1 {
                    if let Some(columns) = ctes.get(&last) {
                        return vec![Item {
                            qualifier,
                            columns: Some(renamed(columns.clone(), alias.as_ref())),
                            relation: None,
                        }];
                    }
                }
                vec![self.base(&name.to_string(), qualifier, alias.as_ref())]
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let columns = renamed(self.query(subquery, ctes, outer), alias.as_ref());
                vec![Item {
                    qualifier: alias.as_ref().map(|a| folded(&a.name)).unwrap_or_default(),
                    columns: Some(columns),
                    relation: None,
                }]
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut items = self.factor(&table_with_joins.relation, ctes, outer);
                for join in &table_with_joins.joins {
                    items.extend(self.factor(&join.relation, ctes, outer));
                }
                if let Some(alias) = alias {
                    // `(a JOIN b) AS j`: one item with every column of the join.
                    let columns = items.iter().flat_map(|i| self.all_columns(i)).collect();
                    return vec![Item {
                        qualifier: folded(&alias.name),
                        columns: Some(renamed(columns, Some(alias))),
                        relation: None,
                    }];
                }
                items
            }
            // Table functions (generate_series, unnest, ...): their columns come from their
            // arguments, which are rarely person data; the row-count check still applies.
            TableFactor::Function { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::UNNEST { alias, .. } => vec![function_item(alias.as_ref())],
            _ => vec![function_item(None)],
        }
    }

    /// A table or view, its columns asked of the database.
    fn base(&self, relation: &str, qualifier: String, alias: Option<&TableAlias>) -> Item {
        let columns = (self.columns_of)(relation).map(|names| {
            let columns = names
                .into_iter()
                .map(|name| Column {
                    sources: self.by_name(relation, &name),
                    name,
                })
                .collect();
            renamed(columns, alias)
        });
        Item {
            qualifier,
            columns,
            relation: Some(relation.to_string()),
        }
    }

    fn by_name(&self, relation: &str, column: &str) -> Sources {
        if (self.identifying)(column) {
            Sources::from([(relation.to_string(), column.to_string())])
        } else {
            Sources::new()
        }
    }

    /// Every column of an item; for a base relation whose columns are unknown, one column that
    /// stands for all of them, taken as identifying since nothing says otherwise.
    fn all_columns(&self, item: &Item) -> Vec<Column> {
        match (&item.columns, &item.relation) {
            (Some(columns), _) => columns.clone(),
            (None, relation) => vec![Column {
                name: format!("{}.*", item.qualifier),
                sources: Sources::from([(
                    relation.clone().unwrap_or_default(),
                    "* (its columns could not be listed)".to_string(),
                )]),
            }],
        }
    }

    /// The identifying base columns an expression is computed from.
    fn expr(&self, expr: &Expr, items: &[Item], ctes: &Ctes, outer: &[&[Item]]) -> Sources {
        let mut expr = expr.clone();
        let mut subqueries = Vec::new();
        // Post-order: what does not carry identity becomes NULL, and scalar subqueries are
        // taken out to be analysed in their own scope.
        let _ = visit_expressions_mut(&mut expr, |e: &mut Expr| {
            if does_not_identify(e) {
                *e = Expr::value(Value::Null);
                return ControlFlow::<()>::Continue(());
            }
            match e {
                Expr::Subquery(query) => {
                    subqueries.push((**query).clone());
                    *e = Expr::value(Value::Null);
                }
                Expr::Exists { .. } => *e = Expr::value(Value::Null),
                Expr::InSubquery { expr: inner, .. } => *e = (**inner).clone(),
                _ => {}
            }
            ControlFlow::Continue(())
        });
        let mut sources = Sources::new();
        let mut scopes: Vec<&[Item]> = vec![items];
        scopes.extend(outer.iter().rev());
        let _ = visit_expressions(&expr, |e: &Expr| {
            match e {
                Expr::Identifier(ident) => {
                    sources.extend(self.resolve(&[], &folded(ident), &scopes));
                }
                Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let qualifier = folded(&parts[parts.len() - 2]);
                    let column = folded(&parts[parts.len() - 1]);
                    sources.extend(self.resolve(&[qualifier], &column, &scopes));
                }
                Expr::Function(function) => {
                    // `json_agg(r.*)`: every column of `r`.
                    if let FunctionArguments::List(list) = &function.args {
                        for arg in &list.args {
                            let arg = match arg {
                                FunctionArg::Unnamed(arg)
                                | FunctionArg::Named { arg, .. }
                                | FunctionArg::ExprNamed { arg, .. } => arg,
                            };
                            if let FunctionArgExpr::QualifiedWildcard(name) = arg {
                                let qualifier = last_part(name).unwrap_or_default();
                                sources.extend(self.whole_row(&qualifier, &scopes));
                            }
                        }
                    }
                }
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        let mut inner: Vec<&[Item]> = outer.to_vec();
        inner.push(items);
        for query in subqueries {
            for column in self.query(&query, ctes, &inner) {
                sources.extend(column.sources);
            }
        }
        sources
    }

    /// What a column reference stands for, innermost scope first. An unresolved name (a
    /// correlated reference the analysis cannot place) is judged by its name.
    fn resolve(&self, qualifier: &[String], column: &str, scopes: &[&[Item]]) -> Sources {
        for scope in scopes {
            let candidates = scope
                .iter()
                .filter(|item| qualifier.is_empty() || item.qualifier == qualifier[0]);
            for item in candidates {
                match &item.columns {
                    Some(columns) => {
                        if let Some(found) = columns.iter().find(|c| c.name == column) {
                            return found.sources.clone();
                        }
                    }
                    None if !qualifier.is_empty() => {
                        return self.by_name(item.relation.as_deref().unwrap_or_default(), column);
                    }
                    None => {}
                }
            }
        }
        if qualifier.is_empty() {
            // A table alias used as a value is the whole row: `to_jsonb(r)`.
            let whole = self.whole_row(column, scopes);
            if !whole.is_empty() {
                return whole;
            }
        }
        let relation = scopes
            .iter()
            .flat_map(|s| s.iter())
            .find(|i| i.columns.is_none())
            .and_then(|i| i.relation.clone())
            .unwrap_or_else(|| qualifier.first().cloned().unwrap_or_default());
        self.by_name(&relation, column)
    }

    fn whole_row(&self, qualifier: &str, scopes: &[&[Item]]) -> Sources {
        scopes
            .iter()
            .flat_map(|s| s.iter())
            .find(|i| i.qualifier == qualifier)
            .map(|item| {
                self.all_columns(item)
                    .into_iter()
                    .flat_map(|c| c.sources)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A table function in FROM: columns named by its alias, computed from no table.
fn function_item(alias: Option<&TableAlias>) -> Item {
    Item {
        qualifier: alias.map(|a| folded(&a.name)).unwrap_or_default(),
        columns: Some(
            alias
                .map(|a| {
                    a.columns
                        .iter()
                        .map(|c| Column {
                            name: folded(&c.name),
                            sources: Sources::new(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        ),
        relation: None,
    }
}

/// Expressions whose value does not identify a person whatever their arguments: counting, and a
/// date reduced to its year or a coarser unit.
fn does_not_identify(expr: &Expr) -> bool {
    const COARSE: &[&str] = &[
        "year",
        "years",
        "decade",
        "century",
        "millennium",
        "isoyear",
    ];
    match expr {
        Expr::Extract { field, .. } => matches!(
            field,
            DateTimeField::Year
                | DateTimeField::Years
                | DateTimeField::Decade
                | DateTimeField::Century
                | DateTimeField::Millennium
                | DateTimeField::Isoyear
        ),
        Expr::Function(function) => {
            let name = last_part(&function.name).unwrap_or_default();
            match name.as_str() {
                "count" => true,
                "date_part" | "date_trunc" => {
                    let FunctionArguments::List(list) = &function.args else {
                        return false;
                    };
                    let first = list.args.first();
                    matches!(
                        first,
                        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v))))
                            if matches!(&v.value, Value::SingleQuotedString(unit)
                                if COARSE.contains(&unit.to_lowercase().as_str()))
                    )
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// The name PostgreSQL gives an output column without an alias.
fn output_name(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => folded(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(folded).unwrap_or_default(),
        Expr::Function(function) => last_part(&function.name).unwrap_or_default(),
        Expr::Cast { expr, .. } | Expr::Nested(expr) => output_name(expr),
        _ => "?column?".into(),
    }
}
