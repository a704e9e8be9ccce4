//! A one-shot completion that a thread can block on and a task can await, whatever the
//! executor: the answer to work handed to another thread (the committer).
//!
//! The worker holds the [`Completer`]; if it is dropped without an answer (the worker
//! stopped, or panicked) the waiter gets `None` rather than waiting forever.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The waiting side: [`Completion::wait`] on a thread, or `.await` in a task.
#[derive(Debug)]
#[must_use = "a completion does nothing unless waited for"]
pub struct Completion<T> {
    slot: Arc<Slot<T>>,
}

/// The answering side; dropping it unanswered answers `None`.
#[derive(Debug)]
pub struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
}

#[derive(Debug)]
struct Slot<T> {
    state: Mutex<State<T>>,
    answered: Condvar,
}

#[derive(Debug)]
enum State<T> {
    /// No answer yet; the task to wake when it comes.
    Waiting(Option<Waker>),
    /// The answer (`None`: the completer was dropped), until it is taken.
    Answered(Option<T>),
    /// The answer was taken.
    Taken,
}

/// A connected pair.
pub fn pair<T>() -> (Completer<T>, Completion<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting(None)),
        answered: Condvar::new(),
    });
    let completer = Completer {
        slot: Some(Arc::clone(&slot)),
    };
    (completer, Completion { slot })
}

impl<T> Completer<T> {
    /// Answers the waiter (if it is still there).
    pub fn complete(mut self, value: T) {
        if let Some(slot) = self.slot.take() {
            slot.answer(Some(value));
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.answer(None);
        }
    }
}

impl<T> Completion<T> {
    /// Blocks the thread until the answer comes; `None` if the completer was dropped.
    pub fn wait(self) -> Option<T> {
        self.wait_for(None).ok().flatten()
    }

    /// [`Completion::wait`] until `deadline`: `Err(self)` if no answer came by then, to wait
    /// on or drop (a later answer is then dropped with it).
    pub fn wait_until(self, deadline: Instant) -> Result<Option<T>, Completion<T>> {
        self.wait_for(Some(deadline))
    }

    fn wait_for(self, deadline: Option<Instant>) -> Result<Option<T>, Completion<T>> {
        let mut state = self.slot.lock();
        loop {
            if let Some(answer) = take(&mut state) {
                return Ok(answer);
            }
            let answered = &self.slot.answered;
            state = match deadline {
                None => answered.wait(state).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        drop(state);
                        return Err(self);
                    }
                    answered
                        .wait_timeout(state, deadline - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

impl<T> Future for Completion<T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut state = self.slot.lock();
        if let Some(answer) = take(&mut state) {
            return Poll::Ready(answer);
        }
        match &mut *state {
            State::Waiting(Some(waker)) if waker.will_wake(cx.waker()) => {}
            State::Waiting(waker) => *waker = Some(cx.waker().clone()),
            // A completion polled again after it was ready: it stays ready with nothing.
            State::Answered(_) | State::Taken => return Poll::Ready(None),
        }
        Poll::Pending
    }
}

impl<T> Slot<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every state is whole after each statement: a poisoned lock carries no news.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn answer(&self, answer: Option<T>) {
        let waker = {
            let mut state = self.lock();
            match std::mem::replace(&mut *state, State::Answered(answer)) {
                State::Waiting(waker) => waker,
                // Answered once only: the completer is consumed or dropped.
                State::Answered(_) | State::Taken => None,
            }
        };
        self.answered.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The answer, if it has come (and was not taken before: then `Some(None)`).
fn take<T>(state: &mut State<T>) -> Option<Option<T>> {
    match std::mem::replace(state, State::Taken) {
        State::Answered(answer) => Some(answer),
        State::Taken => Some(None),
        waiting @ State::Waiting(_) => {
            *state = waiting;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::Duration;

    /// Counts its wake-ups.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll<T>(completion: &mut Completion<T>, waker: &Waker) -> Poll<Option<T>> {
        Pin::new(completion).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn a_thread_waits_for_the_answer_from_another() {
        let (completer, completion) = pair();
        let worker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            completer.complete(7);
        });
        assert_eq!(completion.wait(), Some(7));
        worker.join().unwrap();
    }

    #[test]
    fn a_wait_until_a_deadline_gives_the_completion_back_and_then_the_answer() {
        let (completer, completion) = pair();
        let started = Instant::now();
        let Err(completion) = completion.wait_until(started + Duration::from_millis(30)) else {
            panic!("no answer was given");
        };
        assert!(started.elapsed() >= Duration::from_millis(30));
        completer.complete(7);
        assert_eq!(
            completion.wait_until(Instant::now()).ok(),
            Some(Some(7)),
            "an answer already there is taken even at the deadline"
        );
    }

    #[test]
    fn a_task_is_woken_once_by_the_answer() {
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let (completer, mut completion) = pair();
        assert_eq!(poll(&mut completion, &waker), Poll::Pending);
        assert_eq!(poll(&mut completion, &waker), Poll::Pending);
        completer.complete("stored");
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut completion, &waker), Poll::Ready(Some("stored")));
        assert_eq!(poll(&mut completion, &waker), Poll::Ready(None));
    }

    #[test]
    fn a_dropped_completer_answers_none_to_a_thread_and_a_task() {
        let (completer, completion) = pair::<u8>();
        drop(completer);
        assert_eq!(completion.wait(), None);

        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&counter));
        let (completer, mut completion) = pair::<u8>();
        assert_eq!(poll(&mut completion, &waker), Poll::Pending);
        drop(completer);
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(poll(&mut completion, &waker), Poll::Ready(None));
    }

    #[test]
    fn an_answer_nobody_waits_for_is_dropped() {
        let (completer, completion) = pair();
        drop(completion);
        completer.complete(vec![1, 2, 3]);
    }
}
