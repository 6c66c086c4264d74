//! `#[derive(DomainEvent)]`.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Attribute, Data, DeriveInput, Fields, Ident, LitInt, LitStr, Path};

/// What `#[event(...)]` on the type says.
#[derive(Default)]
struct TypeOptions {
    name: Option<LitStr>,
    version: Option<LitInt>,
    upcasters: Option<Path>,
    krate: Option<Path>,
}

/// What `#[event(...)]` on a variant says.
#[derive(Default)]
struct VariantOptions {
    name: Option<LitStr>,
    version: Option<LitInt>,
}

/// One stored type: its name, version and the serde variant it decodes into.
struct StoredType {
    name: String,
    version: u32,
    span: Span,
}

pub(crate) fn expand(input: DeriveInput) -> syn::Result<TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "DomainEvent cannot be derived for a generic type: stored events need one concrete type",
        ));
    }
    let options = type_options(&input.attrs)?;
    let krate = options
        .krate
        .clone()
        .unwrap_or_else(|| syn::parse_quote!(::annals));
    let private = quote!(#krate::__private);
    let ident = &input.ident;
    let body = match &input.data {
        Data::Enum(data) => {
            if let Some(name) = &options.name {
                return Err(syn::Error::new_spanned(
                    name,
                    "`name` goes on each variant of an event enum, not on the enum",
                ));
            }
            if let Some(version) = &options.version {
                return Err(syn::Error::new_spanned(
                    version,
                    "`version` goes on each variant of an event enum, not on the enum",
                ));
            }
            reject_serde_representation(&input.attrs)?;
            enum_body(ident, data, &private)?
        }
        Data::Struct(_) => struct_body(&input, &options, &private)?,
        Data::Union(_) => {
            return Err(syn::Error::new_spanned(
                ident,
                "DomainEvent can be derived for enums and structs, not unions",
            ));
        }
    };
    let upcasters = options.upcasters.as_ref().map(|path| {
        quote! {
            fn upcasters() -> &'static #private::Upcasters {
                static UPCASTERS: ::std::sync::OnceLock<#private::Upcasters> =
                    ::std::sync::OnceLock::new();
                UPCASTERS.get_or_init(#path)
            }
        }
    });
    Ok(quote! {
        #[automatically_derived]
        impl #private::DomainEvent for #ident {
            #body
            #upcasters
        }
    })
}

fn enum_body(
    ident: &Ident,
    data: &syn::DataEnum,
    private: &TokenStream,
) -> syn::Result<TokenStream> {
    if data.variants.is_empty() {
        return Err(syn::Error::new_spanned(
            ident,
            "an event enum needs at least one variant",
        ));
    }
    let mut stored: Vec<StoredType> = Vec::new();
    let mut type_arms = Vec::new();
    let mut decode_arms = Vec::new();
    for (index, variant) in data.variants.iter().enumerate() {
        let options = variant_options(&variant.attrs)?;
        let stored_type = stored_type(
            options.name.as_ref(),
            options.version.as_ref(),
            &variant.ident,
        )?;
        if let Some(earlier) = stored.iter().find(|earlier| {
            earlier.name == stored_type.name && earlier.version == stored_type.version
        }) {
            let mut error = syn::Error::new(
                stored_type.span,
                format!(
                    "two variants are stored as `{}` version {}",
                    stored_type.name, stored_type.version
                ),
            );
            error.combine(syn::Error::new(earlier.span, "first used here"));
            return Err(error);
        }
        let serde_name = serde_variant_name(variant)?;
        let variant_ident = &variant.ident;
        let pattern = match &variant.fields {
            Fields::Named(_) => quote!(Self::#variant_ident { .. }),
            Fields::Unnamed(_) => quote!(Self::#variant_ident(..)),
            Fields::Unit => quote!(Self::#variant_ident),
        };
        type_arms.push(quote!(#pattern => Self::TYPES[#index]));
        let name = &stored_type.name;
        let version = stored_type.version;
        decode_arms.push(quote! {
            (#name, #version) => #private::decode_variant::<Self>(#serde_name, payload)
        });
        stored.push(stored_type);
    }
    let types = stored.iter().map(|stored| {
        let (name, version) = (&stored.name, stored.version);
        quote!(#private::EventType::new(#name, #version))
    });
    Ok(quote! {
        const TYPES: &'static [#private::EventType] = &[#(#types),*];

        fn event_type(&self) -> #private::EventType {
            match self {
                #(#type_arms,)*
            }
        }

        fn encode(&self) -> ::std::result::Result<#private::Payload, #private::serde_json::Error> {
            #private::encode_variant(self)
        }

        fn decode(
            name: &str,
            version: u32,
            payload: &str,
        ) -> ::std::result::Result<Self, #private::serde_json::Error> {
            match (name, version) {
                #(#decode_arms,)*
                _ => ::std::result::Result::Err(#private::unknown_type(name, version)),
            }
        }
    })
}

fn struct_body(
    input: &DeriveInput,
    options: &TypeOptions,
    private: &TokenStream,
) -> syn::Result<TokenStream> {
    let stored = stored_type(
        options.name.as_ref(),
        options.version.as_ref(),
        &input.ident,
    )?;
    let (name, version) = (&stored.name, stored.version);
    Ok(quote! {
        const TYPES: &'static [#private::EventType] = &[#private::EventType::new(#name, #version)];

        fn event_type(&self) -> #private::EventType {
            Self::TYPES[0]
        }

        fn encode(&self) -> ::std::result::Result<#private::Payload, #private::serde_json::Error> {
            #private::encode_struct(self)
        }

        fn decode(
            name: &str,
            version: u32,
            payload: &str,
        ) -> ::std::result::Result<Self, #private::serde_json::Error> {
            match (name, version) {
                (#name, #version) => #private::decode_struct(payload),
                _ => ::std::result::Result::Err(#private::unknown_type(name, version)),
            }
        }
    })
}

fn stored_type(
    name: Option<&LitStr>,
    version: Option<&LitInt>,
    ident: &Ident,
) -> syn::Result<StoredType> {
    let (text, span) = match name {
        Some(name) => (name.value(), name.span()),
        None => (ident.to_string(), ident.span()),
    };
    if text.is_empty() || text.len() > 255 || text.chars().any(char::is_control) {
        return Err(syn::Error::new(
            span,
            "an event name must be 1 to 255 bytes without control characters",
        ));
    }
    let version = match version {
        Some(version) => {
            let value: u32 = version.base10_parse()?;
            if value == 0 {
                return Err(syn::Error::new_spanned(
                    version,
                    "event versions start at 1",
                ));
            }
            value
        }
        None => 1,
    };
    Ok(StoredType {
        name: text,
        version,
        span,
    })
}

fn type_options(attrs: &[Attribute]) -> syn::Result<TypeOptions> {
    let mut options = TypeOptions::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                options.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("version") {
                options.version = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("upcasters") {
                options.upcasters = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                options.krate = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error(
                    "unknown `event` option; expected `name`, `version`, `upcasters` or `crate`",
                ));
            }
            Ok(())
        })?;
    }
    Ok(options)
}

fn variant_options(attrs: &[Attribute]) -> syn::Result<VariantOptions> {
    let mut options = VariantOptions::default();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("event")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                options.name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("version") {
                options.version = Some(meta.value()?.parse()?);
            } else {
                return Err(
                    meta.error("unknown `event` option on a variant; expected `name` or `version`")
                );
            }
            Ok(())
        })?;
    }
    Ok(options)
}

/// Refuses serde representations other than the default external tagging:
/// the payload of a variant is found by its serde name.
fn reject_serde_representation(attrs: &[Attribute]) -> syn::Result<()> {
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            for refused in ["tag", "content", "untagged", "rename_all", "rename_all_fields"] {
                if meta.path.is_ident(refused) {
                    return Err(meta.error(format!(
                        "`#[serde({refused})]` is not supported on an event enum: annals stores the \
                         type name beside the payload, so the enum keeps serde's default representation"
                    )));
                }
            }
            // Skip the value of options we do not look at.
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The name serde gives the variant: its `#[serde(rename = "..")]` or its
/// identifier.
fn serde_variant_name(variant: &syn::Variant) -> syn::Result<LitStr> {
    let mut name = LitStr::new(&variant.ident.to_string(), variant.ident.span());
    for attr in variant
        .attrs
        .iter()
        .filter(|attr| attr.path().is_ident("serde"))
    {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("rename") {
                if meta.input.peek(syn::Token![=]) {
                    name = meta.value()?.parse()?;
                    return Ok(());
                }
                return Err(meta.error(
                    "use `#[serde(rename = \"..\")]` on event variants; separate serialize and deserialize names are not supported",
                ));
            }
            for refused in ["skip", "skip_deserializing", "skip_serializing", "other", "untagged"] {
                if meta.path.is_ident(refused) {
                    return Err(meta.error(format!(
                        "`#[serde({refused})]` is not supported on an event variant: every variant must round-trip"
                    )));
                }
            }
            if meta.input.peek(syn::Token![=]) {
                let _: syn::Expr = meta.value()?.parse()?;
            } else if meta.input.peek(syn::token::Paren) {
                let _content;
                syn::parenthesized!(_content in meta.input);
            }
            Ok(())
        })?;
    }
    Ok(name)
}
