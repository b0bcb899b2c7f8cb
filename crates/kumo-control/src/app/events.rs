//! Events of a project.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::page::PageRequest;
use kumo_types::{EventView, ResultsPage};

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<EventView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let resource = match instance {
        None => None,
        Some(i) => {
            let sel = selector("instance", i)?;
            // Events outlive instances: look among deleted ones too when given an id.
            match kumo_store::instances::get(&mut conn, p.id, &sel).await? {
                Some(rec) => Some(rec.view.id),
                None => match sel {
                    kumo_types::NameOrId::Id(id) => Some(id),
                    kumo_types::NameOrId::Name(_) => return Err(ApiError::not_found("instance", i)),
                },
            }
        }
    };
    Ok(kumo_store::events::list(&mut conn, p.id, resource, page).await?)
}
