//! `pipeline!`: parse the declaration, check it, and generate the pipeline type.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Expr, Ident, LitStr, Token, Type, Visibility, braced};

use crate::connector::Errors;
use crate::names;

/// One `key: value` entry, its value kept as tokens until the key is known.
struct Entry {
    key: Ident,
    value: TokenStream,
}

/// The declaration as written.
struct Declaration {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    entries: Vec<Entry>,
}

impl Parse for Declaration {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let ident: Ident = input.parse()?;
        let body;
        braced!(body in input);
        let mut entries = Vec::new();
        while !body.is_empty() {
            let key: Ident = body.parse()?;
            body.parse::<Token![:]>()?;
            // The value runs to the next top-level comma.
            let mut value = TokenStream::new();
            while !body.is_empty() && !body.peek(Token![,]) {
                value.extend([body.parse::<TokenTree>()?]);
            }
            if value.is_empty() {
                return Err(syn::Error::new(
                    key.span(),
                    format!("`{key}` needs a value"),
                ));
            }
            entries.push(Entry { key, value });
            if !body.is_empty() {
                body.parse::<Token![,]>()?;
            }
        }
        Ok(Self {
            attrs,
            vis,
            ident,
            entries,
        })
    }
}

/// The checked model.
struct Model {
    attrs: Vec<Attribute>,
    vis: Visibility,
    ident: Ident,
    source: Type,
    sink: Type,
    transform: Option<TransformFn>,
    state: Option<Type>,
    workflow: LitStr,
}

/// The transform as written: `f` or `async f`.
struct TransformFn {
    is_async: bool,
    f: Expr,
}

impl Parse for TransformFn {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let is_async = input.parse::<Option<Token![async]>>()?.is_some();
        Ok(Self {
            is_async,
            f: input.parse()?,
        })
    }
}

pub fn expand(input: TokenStream) -> TokenStream {
    match syn::parse2::<Declaration>(input).and_then(check) {
        Ok(model) => generate(&model),
        Err(err) => err.to_compile_error(),
    }
}

fn check(decl: Declaration) -> syn::Result<Model> {
    let mut errors = Errors::default();
    let (mut source, mut sink, mut transform, mut workflow) = (None, None, None, None);
    let mut state = None;
    for Entry { key, value } in decl.entries {
        let name = key.to_string();
        let seen = match name.as_str() {
            "source" => set(&mut source, syn::parse2::<Type>(value), &mut errors),
            "sink" => set(&mut sink, syn::parse2::<Type>(value), &mut errors),
            "transform" => set(
                &mut transform,
                syn::parse2::<TransformFn>(value),
                &mut errors,
            ),
            "state" => set(&mut state, syn::parse2::<Type>(value), &mut errors),
            "workflow" => {
                let parsed = syn::parse2::<LitStr>(value.clone()).map_err(|_| {
                    syn::Error::new(
                        value.span(),
                        "`workflow` takes a string literal, like `workflow: \"csv-to-mongo\"`",
                    )
                });
                if let Ok(lit) = &parsed
                    && !names::is_valid(&lit.value())
                {
                    errors.push(lit.span(), names::invalid("workflow name", &lit.value()));
                }
                set(&mut workflow, parsed, &mut errors)
            }
            _ => {
                errors.push(key.span(), format!("unknown key `{name}` in `pipeline!`; expected `source`, `transform`, `state`, `sink` or `workflow`"));
                false
            }
        };
        if seen {
            errors.push(key.span(), format!("`{name}` is given twice"));
        }
    }
    let ident = decl.ident;
    if source.is_none() {
        errors.push(
            ident.span(),
            format!("pipeline `{ident}` has no source: add `source: MySourceConfig,`"),
        );
    }
    if sink.is_none() {
        errors.push(
            ident.span(),
            format!("pipeline `{ident}` has no sink: add `sink: MySinkConfig,`"),
        );
    }
    if let (Some(state), None) = (&state, &transform) {
        errors.push(
            state.span(),
            "`state` is given to the transform, and this pipeline has none: add `transform: my_transform,` taking `(record, &State)`",
        );
    }
    let default_name = names::kebab_case(&ident.to_string());
    if workflow.is_none() && !names::is_valid(&default_name) {
        errors.push(
            ident.span(),
            format!(
                "cannot derive a workflow name from `{ident}`: add `workflow: \"my-pipeline\",`"
            ),
        );
    }
    errors.finish()?;
    match (source, sink) {
        (Some(source), Some(sink)) => Ok(Model {
            attrs: decl.attrs,
            vis: decl.vis,
            workflow: workflow.unwrap_or_else(|| LitStr::new(&default_name, ident.span())),
            ident,
            source,
            sink,
            transform,
            state,
        }),
        _ => Err(syn::Error::new(Span::call_site(), "invalid pipeline")),
    }
}

/// Stores a parsed value; returns whether one was there already.
fn set<T>(slot: &mut Option<T>, parsed: syn::Result<T>, errors: &mut Errors) -> bool {
    match parsed {
        Ok(value) if slot.is_none() => {
            *slot = Some(value);
            false
        }
        Ok(_) => true,
        Err(e) => {
            errors.push_error(e);
            false
        }
    }
}

fn generate(m: &Model) -> TokenStream {
    let Model {
        attrs,
        vis,
        ident,
        source,
        sink,
        transform,
        state,
        workflow,
    } = m;
    let bo = quote!(::batch_orchestra);
    let source_record = quote!(<#source as #bo::SourceConfig>::Record);
    let sink_record = quote!(<#sink as #bo::SinkConfig>::Record);
    let state_type = match state {
        Some(s) => quote!(#s),
        None => quote!(()),
    };
    let into = quote!(<_ as #bo::pipeline::TransformOutput<#sink_record>>::into_transformed);
    let body = match transform {
        Some(TransformFn { is_async: false, f }) if state.is_some() => quote_spanned! {f.span()=>
            #bo::__private::written_sync({
                #[allow(unused_imports)]
                use #bo::__private::{ProbeAsync as _, ProbeSync as _};
                (&&#bo::__private::TransformProbeWith::<_, #source_record, #state_type>::of(&#f)).returns()
            });
            let result = #bo::__private::as_transform_with::<#source_record, #sink_record, #state_type, _>(#f)(record, state);
            async move { #into(result) }
        },
        Some(TransformFn { is_async: false, f }) => quote_spanned! {f.span()=>
            let _ = state;
            #bo::__private::written_sync({
                #[allow(unused_imports)]
                use #bo::__private::{ProbeAsync as _, ProbeSync as _};
                (&&#bo::__private::TransformProbe::<_, #source_record>::of(&#f)).returns()
            });
            let result = #bo::__private::as_transform::<#source_record, #sink_record, _>(#f)(record);
            async move { #into(result) }
        },
        Some(TransformFn { is_async: true, f }) if state.is_some() => quote_spanned! {f.span()=>
            #bo::__private::check_async_transform_with::<#source_record, #sink_record, #state_type, _>(&#f);
            async move { #into(#f(record, state).await) }
        },
        Some(TransformFn { is_async: true, f }) => quote_spanned! {f.span()=>
            #bo::__private::check_async_transform::<#source_record, #sink_record, _>(&#f);
            let _ = state;
            async move { #into(#f(record).await) }
        },
        None => quote_spanned! {ident.span()=>
            let _ = state;
            let record = #bo::__private::SameRecord::<#sink_record, #ident>::same_record(record);
            async move { ::core::result::Result::Ok(#bo::pipeline::Transformed::One(record)) }
        },
    };
    let state_check = state
        .as_ref()
        .map(|s| quote_spanned! {s.span()=> #bo::__private::assert_state::<#s>(); });
    let source_check =
        quote_spanned! {source.span()=> #bo::__private::assert_source::<#source>(); };
    let sink_check = quote_spanned! {sink.span()=> #bo::__private::assert_sink::<#sink>(); };
    let alias = format_ident!("{}Workflow", ident);
    let doc_alias = format!(
        "The concrete Temporal workflow of pipeline [`{ident}`], registered as `{}`.",
        workflow.value()
    );
    quote! {
        #(#attrs)*
        #vis struct #ident;

        const _: () = {
            #source_check
            #sink_check
            #state_check
        };

        impl #bo::Pipeline for #ident {
            type Source = #source;
            type Sink = #sink;
            const NAMES: #bo::pipeline::PipelineNames = #bo::pipeline_names!(#workflow);
            type State = #state_type;

            fn transform(
                record: #source_record,
                state: &Self::State,
            ) -> impl ::core::future::Future<Output = ::core::result::Result<#bo::pipeline::Transformed<#sink_record>, #bo::TransformError>> + ::core::marker::Send {
                #body
            }

            fn capabilities() -> #bo::__private::Capabilities<#source> {
                #[allow(unused_imports)]
                use #bo::__private::{DoesNotList as _, DoesNotStream as _, Lists as _, Streams as _};
                let probe = #bo::__private::SourceProbe::<#source>::new();
                #bo::__private::Capabilities::found((&&probe).streaming(), (&&probe).listing())
            }
        }

        impl #bo::__private::Registered for #ident {
            fn register(worker: #bo::WorkerBuilder) -> ::core::result::Result<#bo::WorkerBuilder, #bo::WorkerError> {
                #[allow(unused_imports)]
                use #bo::__private::{RegisterBatch as _, RegisterStream as _};
                (&&#bo::__private::PipelineProbe::<Self>::new()).register(worker)
            }
        }

        impl #ident {
            /// The workflow type name.
            pub const WORKFLOW: &'static str = #workflow;
            /// The plan activity's name.
            pub const PLAN_ACTIVITY: &'static str = <Self as #bo::Pipeline>::NAMES.plan;
            /// The process activity's name.
            pub const PROCESS_ACTIVITY: &'static str = <Self as #bo::Pipeline>::NAMES.process;
            /// The snapshot activity's name.
            pub const SNAPSHOT_ACTIVITY: &'static str = <Self as #bo::Pipeline>::NAMES.snapshot;

            /// A job request with default settings.
            pub fn request(job_id: impl ::core::convert::Into<::std::string::String>, source: #source, sink: #sink) -> #bo::batch::RequestOf<Self> {
                #bo::batch::BatchProcessingRequest::new(job_id, source, sink)
            }

            /// Registers this pipeline's workflow and activities on a worker.
            pub fn register(worker: #bo::WorkerBuilder) -> ::core::result::Result<#bo::WorkerBuilder, #bo::WorkerError> {
                worker.pipeline::<Self>()
            }

            /// Starts a job of this pipeline.
            pub async fn start(client: &#bo::JobClient, request: #bo::batch::RequestOf<Self>) -> ::core::result::Result<#bo::JobHandle<Self>, #bo::JobError> {
                client.start::<Self>(request).await
            }

            /// A handle to a job of this pipeline, by job id.
            pub fn job(client: &#bo::JobClient, job_id: impl ::core::convert::Into<::std::string::String>) -> #bo::JobHandle<Self> {
                client.job::<Self>(job_id)
            }

            /// The sharded workflow's name: `<workflow>.sharded`.
            pub const SHARDED_WORKFLOW: &'static str = <Self as #bo::Pipeline>::NAMES.sharded;

            /// Starts a streaming job of this pipeline (its source is a stream): it runs
            /// until cancelled or until an end condition of the request.
            pub async fn start_stream(client: &#bo::JobClient, request: #bo::stream::StreamRequestOf<Self>) -> ::core::result::Result<#bo::stream::StreamJobHandle<Self>, #bo::JobError> {
                client.start_stream::<Self>(request).await
            }

            /// A handle to a streaming job of this pipeline, by job id.
            pub fn stream_job(client: &#bo::JobClient, job_id: impl ::core::convert::Into<::std::string::String>) -> #bo::stream::StreamJobHandle<Self> {
                client.stream_job::<Self>(job_id)
            }

            /// Starts a sharded job of this pipeline: one child job per input its source
            /// lists (`data/**/*.csv`, `s3://bucket/in/*.csv`).
            pub async fn start_sharded(client: &#bo::JobClient, request: #bo::sharded::ShardedRequestOf<Self>) -> ::core::result::Result<#bo::sharded::ShardedJobHandle<Self>, #bo::JobError> {
                client.start_sharded::<Self>(request).await
            }
        }

        #[doc = #doc_alias]
        #vis type #alias = #bo::batch::PipelineWorkflow<#ident>;
    }
}

/// `pipelines![A, B]`: the pipelines to register on one worker, with their workflow names
/// checked for duplicates at compile time.
pub fn expand_list(input: TokenStream) -> TokenStream {
    let parser = syn::punctuated::Punctuated::<Type, Token![,]>::parse_terminated;
    let types = match syn::parse::Parser::parse2(parser, input) {
        Ok(types) => types.into_iter().collect::<Vec<_>>(),
        Err(e) => return e.to_compile_error(),
    };
    if types.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "`pipelines!` needs at least one pipeline type",
        )
        .to_compile_error();
    }
    // The same pipeline twice is a slip to remove, not a name clash to resolve.
    let spelled = |t: &Type| quote!(#t).to_string().replace(' ', "");
    let mut errors = Errors::default();
    let mut once: Vec<Type> = Vec::new();
    for b in types {
        if once.iter().any(|a| spelled(a) == spelled(&b)) {
            errors.push(
                b.span(),
                format!(
                    "`{}` is listed twice in `pipelines!`: remove the duplicate",
                    spelled(&b)
                ),
            );
        } else {
            once.push(b);
        }
    }
    // The list of the others still builds, so the duplicate is the only error.
    let duplicates = errors.finish().err().map(|e| e.to_compile_error());
    let types = once;
    let bo = quote!(::batch_orchestra);
    let mut checks = Vec::new();
    for (i, a) in types.iter().enumerate() {
        for b in &types[i + 1..] {
            let message = format!(
                "pipelines `{}` and `{}` have the same workflow name: give one of them `workflow: \"...\"` in `pipeline!`",
                quote!(#a).to_string().replace(' ', ""),
                quote!(#b).to_string().replace(' ', "")
            );
            checks.push(quote_spanned! {b.span()=>
                if #bo::__private::same_name(<#a as #bo::Pipeline>::NAMES.workflow, <#b as #bo::Pipeline>::NAMES.workflow) {
                    ::core::panic!(#message);
                }
            });
        }
    }
    quote! {{
        #duplicates
        const _: () = { #(#checks)* };
        #bo::PipelineList::empty()#(.with::<#types>())*
    }}
}
