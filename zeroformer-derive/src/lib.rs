//! `#[derive(Module)]` for zeroformer (re-exported as `zeroformer::nn::Module`).
//!
//! Every named field takes part, through `zeroformer::nn::Visit`: a
//! `Tensor` is a parameter (named after the field), a field that is itself
//! a `Module` is visited with the field's name as a prefix, and `Vec` and
//! `Option` of either follow (`layers.0.`, `layers.1.`, ...). Numbers,
//! booleans and strings are left alone. Field attributes:
//!
//! - `#[module(skip)]`: not visited (a config, a cache, anything else);
//! - `#[module(buffer)]`: a tensor the module computes with but does not
//!   train: visited by `visit_buffers` (moved by `to_device`), not
//!   trained or checkpointed as a parameter.
//!
//! `draws_randomly` is true when any visited field draws randomly (a
//! dropout with `p > 0`).

#![warn(missing_docs)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Fields, parse_macro_input};

/// Implements `zeroformer::nn::Module` for a struct with named fields.
///
/// Every named field takes part, through `zeroformer::nn::Visit`: a
/// `Tensor` is a parameter (named after the field), a field that is itself
/// a `Module` is visited with the field's name as a prefix, and `Vec` and
/// `Option` of either follow (`layers.0.`, `layers.1.`, ...). Numbers,
/// booleans and strings are left alone. Field attributes:
///
/// - `#[module(skip)]`: not visited (a config, a cache, anything else);
/// - `#[module(buffer)]`: a tensor the module computes with but does not
///   train: visited by `visit_buffers` (moved by `to_device`), not trained
///   or checkpointed as a parameter.
///
/// `draws_randomly` is true when any visited field draws randomly (a
/// dropout with `p > 0`).
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// What a field's `#[module(...)]` attribute says.
#[derive(PartialEq)]
enum Role {
    Visited,
    Buffer,
    Skipped,
}

fn role(field: &syn::Field) -> syn::Result<Role> {
    let mut role = Role::Visited;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                role = Role::Skipped;
                Ok(())
            } else if meta.path.is_ident("buffer") {
                role = Role::Buffer;
                Ok(())
            } else {
                Err(meta.error("expected `skip` or `buffer`"))
            }
        })?;
    }
    Ok(role)
}

fn expand(input: &DeriveInput) -> syn::Result<proc_macro2::TokenStream> {
    let fields = match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => &named.named,
            Fields::Unit => &syn::punctuated::Punctuated::new(),
            Fields::Unnamed(_) => {
                return Err(syn::Error::new_spanned(
                    &input.ident,
                    "#[derive(Module)] needs named fields: they name the parameters",
                ));
            }
        },
        _ => {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "#[derive(Module)] works on structs",
            ));
        }
    };
    let (mut params, mut buffers, mut draws) = (Vec::new(), Vec::new(), Vec::new());
    for field in fields {
        let ident = field.ident.as_ref().expect("named");
        let name = ident.to_string();
        match role(field)? {
            Role::Skipped => {}
            Role::Visited => {
                params.push(quote! {
                    ::zeroformer::nn::Visit::visit_parameters(&self.#ident, prefix, #name, f);
                });
                buffers.push(quote! {
                    ::zeroformer::nn::Visit::visit_buffers(&self.#ident, prefix, #name, f);
                });
                draws.push(quote! {
                    || ::zeroformer::nn::Visit::draws_randomly(&self.#ident)
                });
            }
            // A buffer's tensors are what `visit_buffers` reports, in the
            // way parameters are reported by `visit_parameters`.
            Role::Buffer => buffers.push(quote! {
                ::zeroformer::nn::Visit::visit_parameters(&self.#ident, prefix, #name, f);
            }),
        }
    }
    let ident = &input.ident;
    let (impl_generics, type_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::zeroformer::nn::Module for #ident #type_generics #where_clause {
            fn visit_parameters(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &::zeroformer::Tensor),
            ) {
                let _ = (&prefix, &f);
                #(#params)*
            }

            fn visit_buffers(
                &self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &::zeroformer::Tensor),
            ) {
                let _ = (&prefix, &f);
                #(#buffers)*
            }

            fn draws_randomly(&self) -> bool {
                false #(#draws)*
            }
        }
    })
}
