//! Forwarding for wrappers of async session handlers, the async counterpart of the
//! `forward_hooks!` of [`crate::server::hooks`]: each hook first goes to the wrapper's own
//! `fn intercept_async(&mut self, hook: &Hook<'_>) -> impl Future<Output = Option<Answer>>`,
//! and to `self.$inner` when that says `None`. Use inside the wrapper's
//! `impl AsyncSessionHandler` block, as `with_hooks!(forward_hooks_async! inner);`.

macro_rules! forward_hooks_async {
    ([$inner:ident] $(
        $(#[$doc:meta])*
        $variant:ident => fn $name:ident $(<$lt:lifetime>)? ($($arg:ident: $ty:ty),*) -> $answer:ty $default:block
    )*) => {
        $(
            fn $name $(<$lt>)? (&mut self, $($arg: $ty),*)
                -> impl ::std::future::Future<Output = $answer> + Send {
                async move {
                    let hook = $crate::server::hooks::Hook::$variant { $($arg),* };
                    if let Some(answer) = self.intercept_async(&hook).await {
                        return <$answer as $crate::server::hooks::IntoAnswer>::from_answer(answer);
                    }
                    self.$inner.$name($($arg),*).await
                }
            }
        )*
    };
}
pub(crate) use forward_hooks_async;
