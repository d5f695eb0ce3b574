//! Who a WeCom sign-in found, whether they may in, and the identity claims they get:
//! pure functions, so every rule of the claim table and of access is tested here.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::client::{PrivateInfo, Visitor};
use super::refusal::WecomRefusal;

/// A signed-in WeCom user, as the session keeps them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WecomIdentity {
    pub corp_id: String,
    #[serde(flatten)]
    pub who: Who,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Who {
    /// A member of the organisation.
    Member {
        userid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default)]
        department: Vec<u64>,
        /// With snsapi_privateinfo and the member's consent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        private: Option<Private>,
    },
    /// Not a member (allowed in only with `members_only = false`).
    Visitor {
        openid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_userid: Option<String>,
    },
}

/// The consented details worth a claim (the member's QR code and address are not).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Private {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub avatar: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mobile: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gender: String,
}

impl From<PrivateInfo> for Private {
    fn from(p: PrivateInfo) -> Self {
        Private {
            avatar: p.avatar,
            // The organisation's mailbox when the member has no email of their own.
            email: if p.email.is_empty() {
                p.biz_mail
            } else {
                p.email
            },
            mobile: p.mobile,
            gender: p.gender,
        }
    }
}

impl WecomIdentity {
    /// The `sub`: the userid of a member, the openid of a visitor.
    pub fn subject(&self) -> &str {
        match &self.who {
            Who::Member { userid, .. } => userid,
            Who::Visitor { openid, .. } => openid,
        }
    }

    pub fn departments(&self) -> &[u64] {
        match &self.who {
            Who::Member { department, .. } => department,
            Who::Visitor { .. } => &[],
        }
    }

    pub fn userid(&self) -> Option<&str> {
        match &self.who {
            Who::Member { userid, .. } => Some(userid),
            Who::Visitor { .. } => None,
        }
    }

    /// The identity claims beside the common ones (iss, aud, times, ids): `idp`,
    /// `sub`, `corpid`, then `userid`, `department` and `name` when readable for a
    /// member (`picture`, `email`, `phone_number`, `gender` with consent), or
    /// `openid` and `external_userid` for a visitor.
    pub fn claims(&self) -> Map<String, Value> {
        let mut c = Map::new();
        c.insert("idp".into(), "wecom".into());
        c.insert("sub".into(), self.subject().into());
        c.insert("corpid".into(), self.corp_id.as_str().into());
        let mut put = |k: &str, v: &str| {
            if !v.is_empty() {
                c.insert(k.into(), v.into());
            }
        };
        match &self.who {
            Who::Member {
                userid,
                name,
                private,
                ..
            } => {
                put("userid", userid);
                put("name", name.as_deref().unwrap_or_default());
                if let Some(p) = private {
                    put("picture", &p.avatar);
                    put("email", &p.email);
                    put("phone_number", &p.mobile);
                    put("gender", &p.gender);
                }
            }
            Who::Visitor {
                openid,
                external_userid,
            } => {
                put("openid", openid);
                put(
                    "external_userid",
                    external_userid.as_deref().unwrap_or_default(),
                );
            }
        }
        if let Who::Member { department, .. } = &self.who {
            c.insert("department".into(), department.clone().into());
        }
        c
    }
}

/// Every claim a WeCom identity may carry, for the discovery document.
pub const CLAIMS: &[&str] = &[
    "idp",
    "corpid",
    "userid",
    "department",
    "name",
    "picture",
    "email",
    "phone_number",
    "gender",
    "openid",
    "external_userid",
];

/// Whether a user in `departments` passes an allow-list of departments (empty: all).
/// A member counts by the departments they are directly in: WeCom's `user/get` lists
/// those, not their parents.
pub fn department_allowed(departments: &[u64], allowed: &[u64]) -> bool {
    allowed.is_empty() || departments.iter().any(|d| allowed.contains(d))
}

/// The sign-in's own rules (`wecom.members_only`, `wecom.allowed_departments`), for
/// who `getuserinfo` said the code belongs to, before any further call is made.
pub fn admit_visitor(
    visitor: &Visitor,
    members_only: bool,
    allowed_departments: &[u64],
) -> Result<(), WecomRefusal> {
    match visitor {
        Visitor::Member { .. } => Ok(()),
        // A visitor is in no department: a department list keeps them out too.
        Visitor::NonMember { .. } if members_only || !allowed_departments.is_empty() => {
            Err(WecomRefusal::NotMember)
        }
        Visitor::NonMember { .. } => Ok(()),
    }
}

/// The rules for an identity once its departments are known (at sign-in, and again
/// for every request: a reload may have changed them).
pub fn admit(
    identity: &WecomIdentity,
    members_only: bool,
    allowed_departments: &[u64],
) -> Result<(), WecomRefusal> {
    match &identity.who {
        Who::Visitor { .. } if members_only || !allowed_departments.is_empty() => {
            Err(WecomRefusal::NotMember)
        }
        Who::Member { department, .. } if !department_allowed(department, allowed_departments) => {
            Err(WecomRefusal::DepartmentNotAllowed)
        }
        _ => Ok(()),
    }
}

/// The same rules for a session signed in earlier, from the claims it keeps (a reload
/// may have changed the rules since).
pub fn admit_claims(
    claims: &std::collections::BTreeMap<String, Value>,
    members_only: bool,
    allowed_departments: &[u64],
) -> Result<(), WecomRefusal> {
    let member = claims.get("userid").and_then(Value::as_str).is_some();
    let departments: Vec<u64> = claims
        .get("department")
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    match member {
        false if members_only || !allowed_departments.is_empty() => Err(WecomRefusal::NotMember),
        true if !department_allowed(&departments, allowed_departments) => {
            Err(WecomRefusal::DepartmentNotAllowed)
        }
        _ => Ok(()),
    }
}

/// A route's own lists: `allowed_userids` and `allowed_departments`, each empty for
/// "anyone"; a member on either list may in when both are set.
pub fn route_allows(
    identity: &WecomIdentity,
    allowed_userids: &[String],
    allowed_departments: &[u64],
) -> bool {
    if allowed_userids.is_empty() && allowed_departments.is_empty() {
        return true;
    }
    let by_userid = identity
        .userid()
        .is_some_and(|u| allowed_userids.iter().any(|a| a == u));
    let by_department = !allowed_departments.is_empty()
        && department_allowed(identity.departments(), allowed_departments);
    by_userid || by_department
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(department: &[u64], name: Option<&str>, private: Option<Private>) -> WecomIdentity {
        WecomIdentity {
            corp_id: "wwcorp".into(),
            who: Who::Member {
                userid: "zhangsan".into(),
                name: name.map(Into::into),
                department: department.to_vec(),
                private,
            },
        }
    }

    fn visitor() -> WecomIdentity {
        WecomIdentity {
            corp_id: "wwcorp".into(),
            who: Who::Visitor {
                openid: "oVisitor".into(),
                external_userid: Some("wmExt".into()),
            },
        }
    }

    #[test]
    fn claims_follow_the_product_table() {
        let cases = [
            (
                "a member with a readable name",
                member(&[1, 7], Some("张三"), None),
                json!({"idp": "wecom", "sub": "zhangsan", "corpid": "wwcorp",
                    "userid": "zhangsan", "department": [1, 7], "name": "张三"}),
            ),
            (
                "no name (WeCom gave none): no claim, not an empty one",
                member(&[2], Some(""), None),
                json!({"idp": "wecom", "sub": "zhangsan", "corpid": "wwcorp",
                    "userid": "zhangsan", "department": [2]}),
            ),
            (
                "private details with consent, the business mailbox standing in",
                member(
                    &[],
                    None,
                    Some(Private::from(PrivateInfo {
                        avatar: "https://wework.qpic.cn/a/0".into(),
                        biz_mail: "zs@corp.example".into(),
                        mobile: "13800000000".into(),
                        gender: "1".into(),
                        ..PrivateInfo::default()
                    })),
                ),
                json!({"idp": "wecom", "sub": "zhangsan", "corpid": "wwcorp",
                    "userid": "zhangsan", "department": [],
                    "picture": "https://wework.qpic.cn/a/0", "email": "zs@corp.example",
                    "phone_number": "13800000000", "gender": "1"}),
            ),
            (
                "a visitor: openid, never a userid or departments",
                visitor(),
                json!({"idp": "wecom", "sub": "oVisitor", "corpid": "wwcorp",
                    "openid": "oVisitor", "external_userid": "wmExt"}),
            ),
        ];
        for (name, identity, want) in cases {
            assert_eq!(Value::Object(identity.claims()), want, "{name}");
            for k in identity.claims().keys() {
                assert!(
                    k == "sub" || CLAIMS.contains(&k.as_str()),
                    "{name}: {k} unlisted"
                );
            }
        }
    }

    #[test]
    fn identities_round_trip_through_the_session() {
        for i in [member(&[1], Some("n"), Some(Private::default())), visitor()] {
            let text = serde_json::to_string(&i).unwrap();
            assert_eq!(
                serde_json::from_str::<WecomIdentity>(&text).unwrap(),
                i,
                "{text}"
            );
        }
    }

    type Verdict = Result<(), WecomRefusal>;

    #[test]
    fn members_only_and_departments_decide_who_signs_in() {
        let non_member = Visitor::NonMember {
            openid: "o".into(),
            external_userid: None,
        };
        let a_member = Visitor::Member {
            userid: "u".into(),
            user_ticket: None,
        };
        let cases: &[(&str, &Visitor, bool, &[u64], Verdict)] = &[
            ("member, defaults", &a_member, true, &[], Ok(())),
            (
                "non-member, members only",
                &non_member,
                true,
                &[],
                Err(WecomRefusal::NotMember),
            ),
            ("non-member, open", &non_member, false, &[], Ok(())),
            (
                "non-member, departments listed",
                &non_member,
                false,
                &[3],
                Err(WecomRefusal::NotMember),
            ),
            (
                "member, departments checked later",
                &a_member,
                true,
                &[3],
                Ok(()),
            ),
        ];
        for (name, v, members_only, allowed, want) in cases {
            assert_eq!(admit_visitor(v, *members_only, allowed), *want, "{name}");
        }
        let cases: &[(&str, WecomIdentity, bool, &[u64], Verdict)] = &[
            (
                "in an allowed department",
                member(&[1, 7], None, None),
                true,
                &[7, 9],
                Ok(()),
            ),
            (
                "outside every allowed one",
                member(&[1, 2], None, None),
                true,
                &[7],
                Err(WecomRefusal::DepartmentNotAllowed),
            ),
            (
                "in no department at all",
                member(&[], None, None),
                true,
                &[7],
                Err(WecomRefusal::DepartmentNotAllowed),
            ),
            ("no list", member(&[], None, None), true, &[], Ok(())),
            (
                "a visitor kept out later",
                visitor(),
                true,
                &[],
                Err(WecomRefusal::NotMember),
            ),
            ("a visitor let in", visitor(), false, &[], Ok(())),
        ];
        for (name, identity, members_only, allowed, want) in cases {
            assert_eq!(admit(identity, *members_only, allowed), *want, "{name}");
        }
    }

    #[test]
    fn a_stored_session_is_held_to_the_rules_of_now() {
        let kept = |i: &WecomIdentity| {
            i.claims()
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let m = kept(&member(&[1, 7], Some("n"), None));
        let v = kept(&visitor());
        assert_eq!(admit_claims(&m, true, &[]), Ok(()));
        assert_eq!(admit_claims(&m, true, &[7]), Ok(()));
        assert_eq!(
            admit_claims(&m, true, &[3]),
            Err(WecomRefusal::DepartmentNotAllowed)
        );
        assert_eq!(admit_claims(&v, false, &[]), Ok(()));
        assert_eq!(admit_claims(&v, true, &[]), Err(WecomRefusal::NotMember));
        assert_eq!(admit_claims(&v, false, &[7]), Err(WecomRefusal::NotMember));
    }

    #[test]
    fn a_routes_lists_let_in_a_named_member_or_a_department() {
        let m = member(&[4], None, None);
        let u = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&str, Vec<String>, &[u64], bool)] = &[
            ("no lists", u(&[]), &[], true),
            ("named", u(&["zhangsan"]), &[], true),
            ("not named", u(&["lisi"]), &[], false),
            ("department", u(&[]), &[4], true),
            ("other department", u(&[]), &[5], false),
            ("either list", u(&["lisi"]), &[4], true),
        ];
        for (name, ids, deps, want) in cases {
            assert_eq!(route_allows(&m, ids, deps), *want, "{name}");
        }
        assert!(
            !route_allows(&visitor(), &u(&["oVisitor"]), &[]),
            "a visitor is no userid"
        );
    }
}
