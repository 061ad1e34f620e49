//! A report as tables (what the page, the CSV and the workbook all show), and the CSV and
//! `.xlsx` made from them.

use super::{CommuneReport, Figures};
use crate::i18n::Texts;
use chrono::{Datelike, NaiveDate};
use rust_xlsxwriter::{ExcelDateTime, Format, Workbook, XlsxError};

/// One figure of a table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Count(i64),
    /// A count under 3 of a village, hidden from statistics accounts ("< 3").
    Few,
    Percent(f64),
    Minutes(f64),
    /// Not known (no tip acted on) or not counted for this column.
    None,
}

impl Value {
    /// As the page and the CSV write it.
    pub fn text(&self) -> String {
        match self {
            Value::Count(n) => n.to_string(),
            Value::Few => "< 3".into(),
            Value::Percent(p) => format!("{p:.1}"),
            Value::Minutes(m) => format!("{m:.0}"),
            Value::None => String::new(),
        }
    }

    /// The bar a count draws in the page's chart.
    pub fn count(&self) -> i64 {
        match self {
            Value::Count(n) => *n,
            _ => 0,
        }
    }
}

/// One row: a stable code, its label in the reader's language, and the figures for the
/// period, the previous period and the same period a year before.
#[derive(Debug, Clone)]
pub struct Row {
    pub code: String,
    pub label: String,
    pub day: Option<NaiveDate>,
    pub values: [Value; 3],
}

/// One table of the report.
#[derive(Debug, Clone)]
pub struct Table {
    pub code: &'static str,
    pub title: String,
    pub rows: Vec<Row>,
}

/// How a summary row reads its figure from one period's figures.
type Figure = fn(&Figures) -> Value;
/// How a campaign row reads its count from a village's and channel's counts.
type CampaignFigure = fn(&super::CampaignRow) -> i64;

fn minutes(ms: Option<i64>) -> Value {
    ms.map_or(Value::None, |ms| Value::Minutes(ms as f64 / 60_000.0))
}

/// The report's tables. With `mask_small`, a village's count under 3 reads "< 3" (for
/// statistics accounts and province exports: a rare report must not point at a household).
pub fn tables(r: &CommuneReport, t: Texts, mask_small: bool) -> Vec<Table> {
    let all = [&r.now, &r.previous, &r.year_before];
    let row = |code: &str, label: String, f: &dyn Fn(&Figures) -> Value| Row {
        code: code.to_owned(),
        label,
        day: None,
        values: [f(all[0]), f(all[1]), f(all[2])],
    };
    let count = |n: i64| Value::Count(n);
    let summary: Vec<(&str, Figure)> = vec![
        ("tips", |f| Value::Count(f.total)),
        ("acted", |f| Value::Count(f.acted)),
        ("acted_in_time", |f| Value::Count(f.acted_in_time)),
        ("share_in_time", |f| {
            f.share_in_time().map_or(Value::None, Value::Percent)
        }),
        ("median_minutes", |f| minutes(f.median_ms)),
        ("p90_minutes", |f| minutes(f.p90_ms)),
        ("overdue_at_end", |f| Value::Count(f.overdue_at_end)),
        ("confirmed", |f| Value::Count(f.confirmed)),
        ("unfounded", |f| Value::Count(f.unfounded)),
        ("transferred", |f| Value::Count(f.transferred_out)),
        ("duplicates", |f| Value::Count(f.duplicates)),
        ("referred", |f| Value::Count(f.referred)),
        ("still_open", |f| Value::Count(f.still_open)),
        ("rewards", |f| Value::Count(f.rewards)),
        ("hotline_calls", |f| Value::Count(f.hotline_calls)),
        ("messages_police", |f| Value::Count(f.messages_police)),
        ("messages_tipster", |f| Value::Count(f.messages_tipster)),
        ("broadcasts", |f| Value::Count(f.broadcasts)),
        ("reached", |f| Value::Count(f.reached)),
        ("delivered", |f| Value::Count(f.delivered)),
        ("failed", |f| Value::Count(f.failed)),
        ("subscribers_gained", |f| Value::Count(f.subscribers_gained)),
        ("subscribers_lost", |f| Value::Count(f.subscribers_lost)),
    ];
    let summary = Table {
        code: "summary",
        title: t.get("report.t_summary").to_owned(),
        rows: summary
            .into_iter()
            .map(|(code, f)| row(code, t.get(&format!("report.{code}")).to_owned(), &f))
            .collect(),
    };
    let category = Table {
        code: "category",
        title: t.get("report.t_category").to_owned(),
        rows: r
            .now
            .by_category
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                row(
                    c.as_str(),
                    t.get(&format!("category.{}", c.as_str())).to_owned(),
                    &|f| count(f.by_category[i].1),
                )
            })
            .collect(),
    };
    let channel = Table {
        code: "channel",
        title: t.get("report.t_channel").to_owned(),
        rows: r
            .now
            .by_channel
            .iter()
            .enumerate()
            .map(|(i, (c, _))| {
                row(
                    c.as_str(),
                    t.get(&format!("channel.{}", c.as_str())).to_owned(),
                    &|f| count(f.by_channel[i].1),
                )
            })
            .collect(),
    };
    let priority = Table {
        code: "priority",
        title: t.get("report.t_priority").to_owned(),
        rows: r
            .now
            .by_priority
            .iter()
            .enumerate()
            .map(|(i, (p, _))| {
                let key = format!("{p:?}").to_lowercase();
                row(&key, t.get(&format!("priority.{key}")).to_owned(), &|f| {
                    count(f.by_priority[i].1)
                })
            })
            .collect(),
    };
    // Every village counted in any of the three periods, most tips first.
    let mut ids: Vec<Option<i64>> = Vec::new();
    for f in all {
        for (v, _) in &f.by_village {
            if !ids.contains(v) {
                ids.push(*v);
            }
        }
    }
    let village_count = |f: &Figures, v: Option<i64>| {
        let n = f.by_village.iter().find(|x| x.0 == v).map_or(0, |x| x.1);
        if mask_small && n > 0 && n < 3 {
            Value::Few
        } else {
            Value::Count(n)
        }
    };
    let village = Table {
        code: "village",
        title: t.get("report.t_village").to_owned(),
        rows: ids
            .into_iter()
            .map(|v| {
                let name = r.village_name(v);
                Row {
                    code: v.map_or_else(|| "-".to_owned(), |v| v.to_string()),
                    label: if name.is_empty() {
                        t.get("report.no_village").to_owned()
                    } else {
                        name.to_owned()
                    },
                    day: None,
                    values: [
                        village_count(all[0], v),
                        village_count(all[1], v),
                        village_count(all[2], v),
                    ],
                }
            })
            .collect(),
    };
    let day = Table {
        code: "day",
        title: t.get("report.t_day").to_owned(),
        rows: r
            .now
            .per_day
            .iter()
            .map(|(d, n)| Row {
                code: d.to_string(),
                label: d.format("%d/%m/%Y").to_string(),
                day: Some(*d),
                values: [Value::Count(*n), Value::None, Value::None],
            })
            .collect(),
    };
    // Campaign messages per village and channel: every pair seen in any period.
    let mut pairs: Vec<(i64, String)> = Vec::new();
    for f in all {
        for c in &f.campaign {
            if !pairs.iter().any(|p| p.0 == c.village && p.1 == c.transport) {
                pairs.push((c.village, c.transport.clone()));
            }
        }
    }
    pairs.sort();
    let metrics: [(&str, CampaignFigure); 4] = [
        ("reached", |c| c.reached),
        ("delivered", |c| c.delivered),
        ("subscribers_gained", |c| c.gained),
        ("subscribers_lost", |c| c.lost),
    ];
    let mut campaign_rows = Vec::new();
    for (village, transport) in &pairs {
        for (metric, get) in metrics {
            let value = |f: &Figures| {
                let n = f
                    .campaign
                    .iter()
                    .find(|c| c.village == *village && &c.transport == transport)
                    .map_or(0, get);
                if mask_small && n > 0 && n < 3 {
                    Value::Few
                } else {
                    Value::Count(n)
                }
            };
            campaign_rows.push(Row {
                code: format!("{village}:{transport}:{metric}"),
                label: format!(
                    "{} · {} · {}",
                    r.village_name(Some(*village)),
                    t.get(&format!("broadcast.channel.{transport}")),
                    t.get(&format!("report.{metric}"))
                ),
                day: None,
                values: [value(all[0]), value(all[1]), value(all[2])],
            });
        }
    }
    let campaign = Table {
        code: "campaign",
        title: t.get("report.t_campaign").to_owned(),
        rows: campaign_rows,
    };
    vec![summary, category, channel, priority, village, campaign, day]
}

/// The column headings: the row's code and label, then the three periods.
pub fn headings(r: &CommuneReport, t: Texts) -> [String; 5] {
    [
        t.get("report.code").to_owned(),
        t.get("report.item").to_owned(),
        r.period.label(),
        format!(
            "{} ({})",
            t.get("report.previous"),
            r.period.previous().label()
        ),
        format!(
            "{} ({})",
            t.get("report.year_before"),
            r.period.year_before().label()
        ),
    ]
}

fn csv_field(s: &str) -> String {
    // A cell starting with a formula character is quoted with a leading apostrophe so a
    // spreadsheet never runs it.
    let s = if s.starts_with(['=', '+', '-', '@']) && s != "-" {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// The report as CSV (UTF-8 with a byte-order mark, so Excel reads the accents): one
/// line per row, `table,code,label,period,previous,year_before`.
pub fn csv(r: &CommuneReport, t: Texts, mask_small: bool) -> String {
    let mut out = String::from("\u{feff}");
    let h = headings(r, t);
    out.push_str(&format!(
        "{},{},{},{},{},{}\r\n",
        csv_field(t.get("report.table")),
        csv_field(&h[0]),
        csv_field(&h[1]),
        csv_field(&h[2]),
        csv_field(&h[3]),
        csv_field(&h[4])
    ));
    for table in tables(r, t, mask_small) {
        for row in &table.rows {
            out.push_str(&format!(
                "{},{},{},{},{},{}\r\n",
                table.code,
                csv_field(&row.code),
                csv_field(&row.label),
                row.values[0].text(),
                row.values[1].text(),
                row.values[2].text()
            ));
        }
    }
    out
}

/// Writes one figure into a cell: counts and shares as numbers, "< 3" as text.
fn write_value(
    sheet: &mut rust_xlsxwriter::Worksheet,
    y: u32,
    x: u16,
    v: &Value,
    one_decimal: &Format,
) -> Result<(), XlsxError> {
    match v {
        Value::Count(n) => {
            sheet.write_number(y, x, *n as f64)?;
        }
        Value::Percent(p) | Value::Minutes(p) => {
            sheet.write_number_with_format(y, x, (p * 10.0).round() / 10.0, one_decimal)?;
        }
        Value::Few => {
            sheet.write_string(y, x, "< 3")?;
        }
        Value::None => {}
    }
    Ok(())
}

/// The report as an `.xlsx` workbook: one sheet per table, numbers as numbers and days as
/// dates.
pub fn xlsx(r: &CommuneReport, t: Texts, mask_small: bool) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let date = Format::new().set_num_format("dd/mm/yyyy");
    let one_decimal = Format::new().set_num_format("0.0");
    let h = headings(r, t);
    for table in tables(r, t, mask_small) {
        let sheet = book.add_worksheet();
        // A sheet name is at most 31 characters.
        let name: String = table.title.chars().take(31).collect();
        sheet.set_name(name)?;
        sheet.write_string_with_format(
            0,
            0,
            format!("{} — {}, {}", table.title, r.commune_name, r.province_name),
            &bold,
        )?;
        let columns = if table.code == "day" { 3 } else { 5 };
        for (c, heading) in h.iter().take(columns).enumerate() {
            sheet.write_string_with_format(2, c as u16, heading, &bold)?;
        }
        sheet.set_column_width(1, 40)?;
        sheet.set_column_width(2, 14)?;
        sheet.set_column_width(3, 24)?;
        sheet.set_column_width(4, 24)?;
        for (i, row) in table.rows.iter().enumerate() {
            let y = 3 + i as u32;
            match row.day {
                Some(d) => {
                    let day =
                        ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8)?;
                    sheet.write_datetime_with_format(y, 0, &day, &date)?;
                }
                None => {
                    sheet.write_string(y, 0, &row.code)?;
                }
            }
            sheet.write_string(y, 1, &row.label)?;
            for (j, v) in row.values.iter().take(columns - 2).enumerate() {
                write_value(sheet, y, 2 + j as u16, v, &one_decimal)?;
            }
        }
    }
    book.save_to_buffer()
}

#[derive(askama::Template)]
#[template(path = "report_file.html")]
struct ReportFile<'a> {
    t: Texts,
    heading: String,
    columns: [String; 5],
    tables: &'a [Table],
    masked: bool,
}

/// The report as one HTML page of its own (for `tinbao report monthly --format html`),
/// printable on A4.
pub fn html(r: &CommuneReport, t: Texts, mask_small: bool) -> Result<String, askama::Error> {
    use askama::Template;
    let tables = tables(r, t, mask_small);
    ReportFile {
        t,
        heading: format!(
            "{} — {}, {} — {}",
            t.get("report.heading"),
            r.commune_name,
            r.province_name,
            r.period.label()
        ),
        columns: headings(r, t),
        tables: &tables,
        masked: mask_small,
    }
    .render()
}

/// The province view's cells for one row of figures, in [`super::PROVINCE_COLUMNS`] order.
pub fn province_cells(f: &Figures) -> Vec<Value> {
    vec![
        Value::Count(f.total),
        f.share_in_time().map_or(Value::None, Value::Percent),
        minutes(f.median_ms),
        Value::Count(f.overdue_at_end),
        Value::Count(f.confirmed),
        Value::Count(f.unfounded),
        Value::Count(f.transferred_out),
        Value::Count(f.still_open),
        Value::Count(f.hotline_calls),
    ]
}

/// The province view's column headings after the commune's code and name.
pub fn province_headings(t: Texts) -> Vec<String> {
    super::PROVINCE_COLUMNS
        .iter()
        .map(|c| t.get(&format!("report.{c}")).to_owned())
        .collect()
}

/// The province view as CSV: a line per commune, then the totals.
pub fn province_csv(r: &super::ProvinceReport, t: Texts) -> String {
    let mut out = String::from("\u{feff}");
    let mut head = vec![
        csv_field(t.get("report.code")),
        csv_field(t.get("report.commune")),
    ];
    head.extend(province_headings(t).iter().map(|h| csv_field(h)));
    out.push_str(&head.join(","));
    out.push_str("\r\n");
    let line = |code: &str, name: &str, f: &Figures| {
        let mut cells = vec![csv_field(code), csv_field(name)];
        cells.extend(province_cells(f).iter().map(Value::text));
        cells.join(",") + "\r\n"
    };
    for row in &r.rows {
        out.push_str(&line(&row.code.to_string(), &row.name, &row.figures));
    }
    out.push_str(&line("", t.get("report.total"), &r.total));
    out
}

/// The province view as an `.xlsx` workbook of one sheet.
pub fn province_xlsx(r: &super::ProvinceReport, t: Texts) -> Result<Vec<u8>, XlsxError> {
    let mut book = Workbook::new();
    let bold = Format::new().set_bold();
    let one_decimal = Format::new().set_num_format("0.0");
    let sheet = book.add_worksheet();
    sheet.set_name(
        t.get("report.t_province")
            .chars()
            .take(31)
            .collect::<String>(),
    )?;
    sheet.write_string_with_format(
        0,
        0,
        format!("{} — {}", r.province_name, r.period.label()),
        &bold,
    )?;
    let mut head = vec![
        t.get("report.code").to_owned(),
        t.get("report.commune").to_owned(),
    ];
    head.extend(province_headings(t));
    for (c, h) in head.iter().enumerate() {
        sheet.write_string_with_format(2, c as u16, h, &bold)?;
    }
    sheet.set_column_width(1, 32)?;
    let total = ("".to_owned(), t.get("report.total").to_owned(), &r.total);
    let rows = r
        .rows
        .iter()
        .map(|row| (row.code.to_string(), row.name.clone(), &row.figures))
        .chain(std::iter::once(total));
    for (i, (code, name, f)) in rows.enumerate() {
        let y = 3 + i as u32;
        match code.parse::<f64>() {
            Ok(n) => {
                sheet.write_number(y, 0, n)?;
            }
            Err(_) => {
                sheet.write_string_with_format(y, 1, &name, &bold)?;
            }
        }
        if !code.is_empty() {
            sheet.write_string(y, 1, &name)?;
        }
        for (j, v) in province_cells(f).iter().enumerate() {
            write_value(sheet, y, 2 + j as u16, v, &one_decimal)?;
        }
    }
    book.save_to_buffer()
}
