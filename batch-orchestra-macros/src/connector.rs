//! `#[batch_source]` and `#[batch_sink]`: parse the attribute and the struct, check them, and
//! implement `SourceConfig` or `SinkConfig`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Item, ItemStruct, LitStr, Type};

use crate::names;

/// Which side of a pipeline the connector is on.
#[derive(Clone, Copy)]
pub enum Side {
    Source,
    Sink,
}

impl Side {
    fn attribute(self) -> &'static str {
        match self {
            Side::Source => "batch_source",
            Side::Sink => "batch_sink",
        }
    }

    /// The argument naming the built type.
    fn built_arg(self) -> &'static str {
        match self {
            Side::Source => "reader",
            Side::Sink => "writer",
        }
    }

    fn built_trait(self) -> &'static str {
        match self {
            Side::Source => "Source",
            Side::Sink => "Sink",
        }
    }

    fn default_build(self) -> &'static str {
        match self {
            Side::Source => "build_source",
            Side::Sink => "build_sink",
        }
    }
}

/// The checked model of one connector attribute.
struct Connector {
    name: LitStr,
    built: Type,
    build_fn: Ident,
    /// A source's listing method, for sharded jobs.
    shards_fn: Option<Ident>,
    incremental_fn: Option<Ident>,
    streaming: bool,
    item: ItemStruct,
}

/// Collects errors, so one compile shows every problem at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        let err = syn::Error::new(span, message);
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub fn push_error(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    pub fn finish(self) -> Result<(), syn::Error> {
        self.0.map_or(Ok(()), Err)
    }
}

pub fn expand(side: Side, args: TokenStream, input: TokenStream) -> TokenStream {
    match parse(side, args.clone(), input.clone()) {
        Ok(model) => generate(side, &model),
        Err(err) => {
            // Keep the user's item so later errors are about their code, not a missing type,
            // and, when the reader or writer is known, a stand-in impl, so the uses of the
            // config (a pipeline, a request) type-check and the attribute's error is the only
            // one.
            let err = err.to_compile_error();
            let stand_in = stand_in(side, args, &input).unwrap_or_default();
            quote! { #input #err #stand_in }
        }
    }
}

/// The trait impl of a config whose attribute failed, built from its reader or writer alone
/// (`None` when the struct or that type cannot be read). It is never called: the crate does
/// not compile.
fn stand_in(side: Side, args: TokenStream, input: &TokenStream) -> Option<TokenStream> {
    let item = syn::parse2::<syn::ItemStruct>(input.clone()).ok()?;
    if !item.generics.params.is_empty() {
        return None;
    }
    let args = split_args(args, &mut Errors::default());
    if args.iter().any(|a| a.key == "streaming") {
        return None;
    }
    let built = args
        .into_iter()
        .find(|a| a.key == side.built_arg())
        .and_then(|a| syn::parse2::<Type>(a.value?).ok())?;
    let ident = &item.ident;
    let build = quote! {
        fn build(&self) -> impl ::core::future::Future<
            Output = ::core::result::Result<#built, ::batch_orchestra::ConnectorError>,
        > + ::core::marker::Send {
            async { ::core::unreachable!("the connector attribute failed") }
        }
    };
    Some(match side {
        Side::Source => quote! {
            impl ::batch_orchestra::SourceConfig for #ident {
                const NAME: &'static str = "invalid";
                type Record = <#built as ::batch_orchestra::Source>::Record;
                type Offset = <#built as ::batch_orchestra::Source>::Offset;
                type Source = #built;
                #build
            }
        },
        Side::Sink => quote! {
            impl ::batch_orchestra::SinkConfig for #ident {
                const NAME: &'static str = "invalid";
                type Record = <#built as ::batch_orchestra::Sink>::Record;
                type Sink = #built;
                #build
            }
        },
    })
}

fn parse(side: Side, args: TokenStream, input: TokenStream) -> Result<Connector, syn::Error> {
    let attr = side.attribute();
    let mut errors = Errors::default();
    let item = match syn::parse2::<Item>(input) {
        Ok(Item::Struct(item)) => Some(item),
        Ok(Item::Enum(e)) => {
            errors.push(
                e.enum_token.span,
                format!("`#[{attr}]` goes on a config struct, not on an enum"),
            );
            None
        }
        Ok(Item::Union(u)) => {
            errors.push(
                u.union_token.span,
                format!("`#[{attr}]` goes on a config struct, not on a union"),
            );
            None
        }
        Ok(other) => {
            errors.push(other.span(), format!("`#[{attr}]` goes on a config struct"));
            None
        }
        Err(e) => return Err(e),
    };
    if let Some(item) = &item
        && !item.generics.params.is_empty()
    {
        errors.push(
            item.generics.span(),
            format!("`#[{attr}]` config structs cannot be generic"),
        );
    }

    let mut name: Option<LitStr> = None;
    let mut built: Option<Type> = None;
    let mut build_fn: Option<Ident> = None;
    let mut shards_fn: Option<Ident> = None;
    let mut incremental_fn: Option<Ident> = None;
    let mut streaming: Option<Ident> = None;
    let built_arg = side.built_arg();
    for arg in split_args(args, &mut errors) {
        let Arg { key, value } = arg;
        let key_name = key.to_string();
        if key_name == "streaming" && matches!(side, Side::Source) {
            match (value, &streaming) {
                (Some(value), _) => errors.push(
                    value.span(),
                    "`streaming` takes no value: write `streaming`",
                ),
                (None, Some(_)) => errors.push(key.span(), "`streaming` is given twice"),
                (None, None) => streaming = Some(key),
            }
            continue;
        }
        let Some(value) = value else {
            errors.push(
                key.span(),
                format!(
                    "`{key_name}` needs a value, like `{}`",
                    example(&key_name, built_arg)
                ),
            );
            continue;
        };
        let span = value.span();
        match key_name.as_str() {
            "name" => match syn::parse2::<LitStr>(value) {
                Ok(_) if name.is_some() => errors.push(key.span(), "`name` is given twice"),
                Ok(s) => {
                    if !names::is_valid(&s.value()) {
                        errors.push(s.span(), names::invalid("connector name", &s.value()));
                    }
                    name = Some(s);
                }
                Err(_) => errors.push(span, "`name` takes a string literal, like `name = \"numbers\"`"),
            },
            k if k == built_arg => match syn::parse2::<Type>(value) {
                Ok(_) if built.is_some() => errors.push(key.span(), format!("`{built_arg}` is given twice")),
                Ok(Type::Path(path)) => built = Some(Type::Path(path)),
                _ => errors.push(
                    span,
                    format!("`{built_arg}` takes the type that implements `batch_orchestra::{}`, like `{built_arg} = MyType`", side.built_trait()),
                ),
            },
            "build" => match syn::parse2::<Ident>(value) {
                Ok(_) if build_fn.is_some() => errors.push(key.span(), "`build` is given twice"),
                Ok(ident) => build_fn = Some(ident),
                Err(_) => errors.push(span, "`build` takes the name of a method of the config, like `build = open`"),
            },
            "shards" if matches!(side, Side::Source) => match syn::parse2::<Ident>(value) {
                Ok(_) if shards_fn.is_some() => errors.push(key.span(), "`shards` is given twice"),
                Ok(ident) => shards_fn = Some(ident),
                Err(_) => errors.push(span, "`shards` takes the name of a method of the config that lists its inputs, like `shards = list`"),
            },
            "incremental" if matches!(side, Side::Source) => match syn::parse2::<Ident>(value) {
                Ok(_) if incremental_fn.is_some() => errors.push(key.span(), "`incremental` is given twice"),
                Ok(ident) => incremental_fn = Some(ident),
                Err(_) => errors.push(span, "`incremental` takes the name of a method of the config that pins a run's window, like `incremental = begin`"),
            },
            _ => errors.push(
                key.span(),
                match side {
                    Side::Source => format!("unknown argument `{key_name}` of `#[{attr}]`; expected `name`, `{built_arg}`, `build`, `shards`, `incremental` or `streaming`"),
                    Side::Sink => format!("unknown argument `{key_name}` of `#[{attr}]`; expected `name`, `{built_arg}` or `build`"),
                },
            ),
        }
    }
    if name.is_none() {
        errors.push(
            Span::call_site(),
            format!(
                "missing `name`: write `#[{attr}(name = \"my-connector\", {built_arg} = MyType)]`"
            ),
        );
    }
    if built.is_none() {
        errors.push(
            Span::call_site(),
            format!("missing `{built_arg}`: name the type that implements `batch_orchestra::{}`, like `{built_arg} = MyType`", side.built_trait()),
        );
    }
    if let (Some(streaming), Some(_)) = (&streaming, &incremental_fn) {
        errors.push(
            streaming.span(),
            "a streaming source is read from where it stopped, not in windows: drop `incremental` or `streaming`",
        );
    }
    if let (Some(streaming), Some(_)) = (&streaming, &shards_fn) {
        errors.push(
            streaming.span(),
            "a streaming source cannot be sharded: drop `shards` or `streaming`",
        );
    }
    errors.finish()?;
    let default_build = if streaming.is_some() {
        "open_stream"
    } else {
        side.default_build()
    };
    match (name, built, item) {
        (Some(name), Some(built), Some(item)) => Ok(Connector {
            name,
            built,
            build_fn: build_fn.unwrap_or_else(|| format_ident!("{}", default_build)),
            shards_fn,
            incremental_fn,
            streaming: streaming.is_some(),
            item,
        }),
        _ => Err(syn::Error::new(
            Span::call_site(),
            "invalid connector attribute",
        )),
    }
}

/// One `key = value` argument, its value kept as tokens until the key is known.
struct Arg {
    key: Ident,
    value: Option<TokenStream>,
}

/// Splits `a = 1, b = Foo<X, Y>` at top-level commas (outside angle brackets).
fn split_args(args: TokenStream, errors: &mut Errors) -> Vec<Arg> {
    let mut out = Vec::new();
    let mut tokens = args.into_iter().peekable();
    while let Some(first) = tokens.next() {
        let TokenTree::Ident(key) = first else {
            errors.push(first.span(), "expected an argument like `name = \"...\"`");
            // Skip to the next comma.
            for t in tokens.by_ref() {
                if matches!(&t, TokenTree::Punct(p) if p.as_char() == ',') {
                    break;
                }
            }
            continue;
        };
        let mut value = None;
        if matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == '=') {
            tokens.next();
            let mut depth = 0i32;
            let mut collected = TokenStream::new();
            while let Some(t) = tokens.peek() {
                if let TokenTree::Punct(p) = t {
                    match p.as_char() {
                        ',' if depth <= 0 => break,
                        '<' => depth += 1,
                        '>' => depth -= 1,
                        _ => {}
                    }
                }
                collected.extend(tokens.next());
            }
            value = Some(collected).filter(|v| !v.is_empty());
        }
        // The separating comma, if any.
        if matches!(tokens.peek(), Some(TokenTree::Punct(p)) if p.as_char() == ',') {
            tokens.next();
        }
        out.push(Arg { key, value });
    }
    out
}

fn example(key: &str, built_arg: &str) -> String {
    match key {
        "name" => "name = \"numbers\"".into(),
        "build" => "build = open".into(),
        "shards" => "shards = list".into(),
        "incremental" => "incremental = begin".into(),
        k if k == built_arg => format!("{built_arg} = MyType"),
        other => format!("{other} = ..."),
    }
}

fn generate(side: Side, c: &Connector) -> TokenStream {
    let Connector {
        name,
        built,
        build_fn,
        shards_fn,
        incremental_fn,
        streaming,
        item,
    } = c;
    let ident = &item.ident;
    // Through a check that names the expected method when it is missing or has another
    // shape (a config without `build_sink` finds the stand-in of `MissingBuildMethods`).
    let check = match side {
        Side::Source => format_ident!("build_source"),
        Side::Sink => format_ident!("build_sink"),
    };
    let build_call = quote_spanned! {build_fn.span()=>
        ::batch_orchestra::__private::#check::<#built, #ident, _>({
            #[allow(unused_imports)]
            use ::batch_orchestra::__private::MissingBuildMethods as _;
            #ident::#build_fn(self)
        })
    };
    let open_call = quote_spanned! {build_fn.span()=> #ident::#build_fn(self, after) };
    let serde_check = quote_spanned! {ident.span()=>
        const _: () = ::batch_orchestra::__private::assert_serializable_config::<#ident>();
    };
    let list_inputs = shards_fn.as_ref().map(|list| {
        let call = quote_spanned! {list.span()=> #ident::#list(self, after, limit) };
        quote! {
            impl ::batch_orchestra::connector::ListInputs for #ident {
                fn list_inputs(
                    &self,
                    after: ::core::option::Option<::std::string::String>,
                    limit: usize,
                ) -> impl ::core::future::Future<
                    Output = ::core::result::Result<
                        ::batch_orchestra::connector::ShardPage<Self>,
                        ::batch_orchestra::ConnectorError,
                    >,
                > + ::core::marker::Send {
                    #call
                }
            }
        }
    });
    let begin_window = incremental_fn.as_ref().map(|begin| {
        let call = quote_spanned! {begin.span()=> #ident::#begin(self, bounds) };
        quote! {
            fn begin_window(
                &self,
                bounds: ::batch_orchestra::connector::Bounds,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<
                    ::batch_orchestra::connector::Window<Self>,
                    ::batch_orchestra::ConnectorError,
                >,
            > + ::core::marker::Send {
                #call
            }
        }
    });
    let (trait_impl, name_const) = match side {
        Side::Source if *streaming => (
            quote! {
                impl ::batch_orchestra::SourceConfig for #ident {
                    const NAME: &'static str = #name;
                    type Record = <#built as ::batch_orchestra::connector::StreamReader>::Record;
                    type Offset = <#built as ::batch_orchestra::connector::StreamReader>::Offset;
                    type Source = ::batch_orchestra::connector::NotABatch<Self::Record, Self::Offset>;

                    fn build(&self) -> impl ::core::future::Future<
                        Output = ::core::result::Result<Self::Source, ::batch_orchestra::ConnectorError>,
                    > + ::core::marker::Send {
                        ::core::future::ready(::core::result::Result::Ok(
                            ::batch_orchestra::connector::NotABatch::new(#name),
                        ))
                    }
                }

                impl ::batch_orchestra::connector::StreamSource for #ident {
                    type Reader = #built;

                    fn open(
                        &self,
                        after: ::core::option::Option<&Self::Offset>,
                    ) -> impl ::core::future::Future<
                        Output = ::core::result::Result<#built, ::batch_orchestra::ConnectorError>,
                    > + ::core::marker::Send {
                        #open_call
                    }
                }
            },
            quote! {
                /// The streaming source's fixed connector name.
                pub const SOURCE_NAME: &'static str = #name;
            },
        ),
        Side::Source => (
            quote! {
                impl ::batch_orchestra::SourceConfig for #ident {
                    const NAME: &'static str = #name;
                    type Record = <#built as ::batch_orchestra::Source>::Record;
                    type Offset = <#built as ::batch_orchestra::Source>::Offset;
                    type Source = #built;

                    fn build(&self) -> impl ::core::future::Future<
                        Output = ::core::result::Result<#built, ::batch_orchestra::ConnectorError>,
                    > + ::core::marker::Send {
                        #build_call
                    }

                    #begin_window
                }

                #list_inputs
            },
            quote! {
                /// The source's fixed connector name.
                pub const SOURCE_NAME: &'static str = #name;
            },
        ),
        Side::Sink => (
            quote! {
                impl ::batch_orchestra::SinkConfig for #ident {
                    const NAME: &'static str = #name;
                    type Record = <#built as ::batch_orchestra::Sink>::Record;
                    type Sink = #built;

                    fn build(&self) -> impl ::core::future::Future<
                        Output = ::core::result::Result<#built, ::batch_orchestra::ConnectorError>,
                    > + ::core::marker::Send {
                        #build_call
                    }
                }
            },
            quote! {
                /// The sink's fixed connector name.
                pub const SINK_NAME: &'static str = #name;
            },
        ),
    };
    quote! {
        #item
        #serde_check
        #trait_impl
        impl #ident {
            #name_const
        }
    }
}
