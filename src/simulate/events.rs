//! One year of service events: certificate requests, PagoPA payments, school-canteen top-ups,
//! SPID/CIE logins and changes of residence, each by a synthetic resident, on a channel (online,
//! desk, facilitation point) that depends on the requester's age the way internet use does.

use super::population::Resident;
use super::rng::Rng;

/// Share of people who used the internet in the last three months, by age. ISTAT, "Cittadini e
/// ICT", 2024: above 93% from 11 to 54 years, 68.1% at 65–74, 31.4% at 75 and over; 55–59 and
/// 60–64 (not in the summary) are interpolated at 88% and 81%, under 11 set at 60%.
pub fn internet_use(age: i32) -> f64 {
    match age {
        ..11 => 0.60,
        11..55 => 0.93,
        55..60 => 0.88,
        60..65 => 0.81,
        65..75 => 0.681,
        _ => 0.314,
    }
}

/// Age bands used by the service logs and by the shipped registry query.
pub fn age_band(age: i32) -> &'static str {
    match age {
        ..15 => "00-14",
        15..25 => "15-24",
        25..35 => "25-34",
        35..45 => "35-44",
        45..55 => "45-54",
        55..65 => "55-64",
        65..75 => "65-74",
        75..80 => "75-79",
        _ => "80+",
    }
}

pub struct Service {
    pub name: &'static str,
    /// Share of all events.
    weight: f64,
    /// Ages that use the service.
    ages: std::ops::RangeInclusive<i32>,
    /// Of those who use the internet, the share who use this service online.
    online_among_internet_users: f64,
}

pub const SERVICES: &[Service] = &[
    Service {
        name: "certificato",
        weight: 0.30,
        ages: 18..=100,
        online_among_internet_users: 0.75,
    },
    Service {
        name: "pagamento_pagopa",
        weight: 0.25,
        ages: 18..=100,
        online_among_internet_users: 0.85,
    },
    Service {
        name: "ricarica_mensa",
        weight: 0.12,
        ages: 25..=59,
        online_among_internet_users: 0.95,
    },
    // A login is online by nature; the others are logins assisted at a facilitation point.
    Service {
        name: "accesso_spid_cie",
        weight: 0.28,
        ages: 18..=100,
        online_among_internet_users: 1.0,
    },
    Service {
        name: "cambio_residenza",
        weight: 0.05,
        ages: 18..=79,
        online_among_internet_users: 0.60,
    },
];

pub const CHANNELS: [&str; 3] = ["online", "sportello", "punto_facilitazione"];

/// The index of SPID/CIE logins in `SERVICES`: logins, not requests.
pub const LOGIN_SERVICE: u8 = 3;

/// The probability that a request for `service` by someone aged `age` is made online.
pub fn online_probability(service: u8, age: i32) -> f64 {
    internet_use(age) * SERVICES[service as usize].online_among_internet_users
}

/// Of those who do not go online, the share helped at a facilitation point rather than a desk:
/// the points are placed where the elderly need them.
fn facilitation_share(age: i32) -> f64 {
    match age {
        ..65 => 0.10,
        65..75 => 0.25,
        _ => 0.35,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Event {
    /// Local time (Europe/Rome) in seconds since the start of the year.
    pub second_of_year: u32,
    pub service: u8,
    pub channel: u8,
    pub area: i32,
    pub age: i32,
}

/// Relative activity per hour of the day for online services.
const ONLINE_HOURS: [f64; 24] = [
    0.3, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.2, 2.5, 3.5, 3.8, 3.6, 3.0, 2.6, 3.0, 3.4, 3.4, 3.2, 3.0,
    2.8, 2.6, 2.2, 1.5, 0.8,
];

/// `count` events in `year`, sorted by time.
pub fn events(residents: &[Resident], year: i32, count: u64, seed: u64) -> Vec<Event> {
    let mut rng = Rng::fork(seed, 0xE7E7);
    let eligible: Vec<Vec<u32>> = SERVICES
        .iter()
        .map(|s| {
            (0..residents.len() as u32)
                .filter(|&i| s.ages.contains(&(year - residents[i as usize].birth_year)))
                .collect()
        })
        .collect();
    let weights: Vec<f64> = SERVICES.iter().map(|s| s.weight).collect();
    let days = if chrono::NaiveDate::from_ymd_opt(year, 2, 29).is_some() {
        366
    } else {
        365
    };
    let first_weekday = chrono::NaiveDate::from_ymd_opt(year, 1, 1)
        .map_or(0, |d| chrono::Datelike::weekday(&d).num_days_from_monday());
    let weekday = |day: u32| (first_weekday + day) % 7;
    let mut out = Vec::with_capacity(count as usize);
    while (out.len() as u64) < count {
        let service = rng.weighted(&weights);
        let candidates = &eligible[service];
        if candidates.is_empty() {
            continue;
        }
        let resident = residents[candidates[rng.below(candidates.len() as u64) as usize] as usize];
        let age = year - resident.birth_year;
        let spec = &SERVICES[service];
        let channel = if rng.chance(internet_use(age) * spec.online_among_internet_users) {
            0
        } else if spec.name == "accesso_spid_cie" || rng.chance(facilitation_share(age)) {
            2
        } else {
            1
        };
        let second_of_day = if channel == 0 {
            // Online: any day, fewer at weekends; hours as people are awake.
            3600 * rng.weighted(&ONLINE_HOURS) as u32 + rng.below(3600) as u32
        } else {
            // Desks and facilitation points: Monday to Friday, 8:30 to 13:30 and 14:30 to 17:00.
            let minutes = rng.below(300 + 150) as u32;
            let start = if minutes < 300 {
                8 * 3600 + 1800 + 60 * minutes
            } else {
                14 * 3600 + 1800 + 60 * (minutes - 300)
            };
            start + rng.below(60) as u32
        };
        let day = loop {
            let day = rng.below(days) as u32;
            let keep = match (channel, weekday(day)) {
                (0, 5) => 0.6,
                (0, 6) => 0.45,
                (_, 5 | 6) => 0.0,
                _ => 1.0,
            };
            if rng.chance(keep) {
                break day;
            }
        };
        out.push(Event {
            second_of_year: day * 86_400 + second_of_day,
            service: service as u8,
            channel,
            area: resident.area,
            age,
        });
    }
    out.sort_by_key(|e| e.second_of_year);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_go_online_less() {
        let residents: Vec<Resident> = (0..2000)
            .map(|i| Resident {
                area: 1,
                birth_year: 2023 - (i % 100) as i32,
                female: i % 2 == 0,
                citizenship: 0,
                household: i,
            })
            .collect();
        let events = events(&residents, 2023, 50_000, 3);
        let online = |range: std::ops::Range<i32>| {
            let picked: Vec<_> = events.iter().filter(|e| range.contains(&e.age)).collect();
            picked.iter().filter(|e| e.channel == 0).count() as f64 / picked.len() as f64
        };
        let (young, middle, old) = (online(25..45), online(65..75), online(80..100));
        assert!(
            young > middle + 0.1 && middle > old + 0.2,
            "{young} {middle} {old}"
        );
        assert!(
            events
                .windows(2)
                .all(|w| w[0].second_of_year <= w[1].second_of_year)
        );
    }
}
